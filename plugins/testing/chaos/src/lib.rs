//! A pricing rule that misbehaves on purpose, so the host's tests can check that a hostile
//! plugin costs a call, never the kernel. The `mode` setting picks the behaviour:
//!
//! | mode             | behaviour                                                       |
//! |------------------|-----------------------------------------------------------------|
//! | `ok`             | one -1 adjustment on the first line, reason "chaos ok"          |
//! | `loop`           | spins forever (fuel / epoch limits)                             |
//! | `alloc`          | allocates 1 MiB blocks forever (memory limit)                   |
//! | `trap`           | panics, which aborts: a wasm trap                               |
//! | `recurse`        | unbounded non-tail recursion (stack limit)                      |
//! | `huge-output`    | 100,000 adjustments with 1 KiB reasons (~100 MiB of output)     |
//! | `invalid-output` | an adjustment for a line id that is not in the cart             |
//! | `log-spam`       | calls `log` 1,000,000 times, then returns no adjustments       |
//!
//! `std::hint::black_box` keeps the optimiser from removing or bounding the bad behaviour.
//! Never install this plugin in a shop.

use std::hint::black_box;

use olivine_sdk::log;
use olivine_sdk::prelude::*;

pub const HUGE_COUNT: usize = 100_000;
pub const HUGE_REASON_BYTES: usize = 1024;
pub const LOG_SPAM_CALLS: u32 = 1_000_000;

pub fn run(mode: &str, cart: &Cart) -> Result<Vec<Adjustment>, String> {
    match mode {
        "ok" => Ok(cart
            .lines
            .first()
            .map(|line| vec![Adjustment::line(line.line_id, -1, "chaos ok")])
            .unwrap_or_default()),
        // Tells what the store says of its prices (the kernel's `store.` settings).
        "store-facts" => {
            let include = olivine_sdk::settings::get_or("store.prices_include_tax", "unset");
            Ok(cart
                .lines
                .first()
                .map(|line| {
                    vec![Adjustment::line(
                        line.line_id,
                        -1,
                        format!("prices_include_tax={include}"),
                    )]
                })
                .unwrap_or_default())
        }
        "loop" => spin(),
        "alloc" => hoard(),
        "trap" => trap(),
        "recurse" => {
            let depth = recurse(black_box(0));
            Err(format!("recursion ended at depth {depth}"))
        }
        "huge-output" => {
            let line_id = cart.lines.first().map(|l| l.line_id);
            Ok((0..HUGE_COUNT)
                .map(|i| Adjustment {
                    line_id,
                    amount_minor: 0,
                    reason: black_box(format!("{i:08}{}", "x".repeat(HUGE_REASON_BYTES - 8))),
                })
                .collect())
        }
        "invalid-output" => {
            let missing = cart
                .lines
                .iter()
                .map(|l| l.line_id)
                .max()
                .map_or(1, |max| max.wrapping_add(1));
            Ok(vec![Adjustment::line(missing, -1, "chaos invalid line")])
        }
        "log-spam" => {
            for i in 0..black_box(LOG_SPAM_CALLS) {
                log::write(
                    log::Level::Info,
                    black_box(if i % 2 == 0 {
                        "chaos spam"
                    } else {
                        "chaos spam!"
                    }),
                );
            }
            Ok(Vec::new())
        }
        other => Err(format!(
            "unknown chaos mode `{other}`; use ok, store-facts, loop, alloc, trap, recurse, huge-output, invalid-output or log-spam"
        )),
    }
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn hoard() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0_u8; 1 << 20];
        block[black_box(blocks.len()) % (1 << 20)] = 1;
        blocks.push(black_box(block));
        black_box(&blocks);
    }
}

fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    panic!("chaos: trap requested");
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    // A frame the optimiser cannot drop, and work after the call so it is not a tail call.
    let frame = black_box([depth; 16]);
    if black_box(depth) == u64::MAX {
        return depth;
    }
    let below = recurse(black_box(depth + 1));
    below.wrapping_add(frame[(depth % 16) as usize])
}

pub struct Chaos;

impl PricingRule for Chaos {
    fn price(cart: &Cart) -> Result<Vec<Adjustment>, String> {
        let mode = olivine_sdk::settings::get_or("mode", "ok");
        run(mode.trim(), cart)
    }
}

olivine_sdk::export_pricing_rule!(Chaos);

#[cfg(test)]
mod tests {
    use super::*;

    fn cart() -> Cart {
        Cart {
            currency: "EUR".into(),
            lines: vec![CartLine {
                line_id: 7,
                product_index: 0,
                variant_id: 1,
                quantity: 1,
                unit_price_minor: 100,
                subscription: false,
            }],
            products: vec![],
            customer: None,
        }
    }

    #[test]
    fn ok_and_invalid_output() {
        assert_eq!(
            run("ok", &cart()).unwrap(),
            [Adjustment::line(7, -1, "chaos ok")]
        );
        assert_eq!(run("invalid-output", &cart()).unwrap()[0].line_id, Some(8));
        assert!(run("nonsense", &cart()).is_err());
    }

    #[test]
    fn huge_output_is_huge() {
        let out = run("huge-output", &cart()).unwrap();
        assert_eq!(out.len(), HUGE_COUNT);
        assert!(out.iter().all(|a| a.reason.len() == HUGE_REASON_BYTES));
    }

    #[test]
    #[should_panic(expected = "chaos: trap requested")]
    fn trap_panics_natively() {
        let _ = run("trap", &cart());
    }

    #[test]
    fn mode_comes_from_settings() {
        olivine_sdk::testing::set_settings([("mode", "invalid-output")]);
        assert_eq!(
            <Chaos as PricingRule>::price(&cart()).unwrap()[0].line_id,
            Some(8)
        );
        olivine_sdk::testing::clear();
    }

    #[test]
    fn fixtures() {
        let ran =
            olivine_sdk::testing::fixtures::check_pricing::<Chaos>(env!("CARGO_MANIFEST_DIR"));
        assert!(ran >= 2);
    }
}
