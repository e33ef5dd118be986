//! Load generator for the checkout benchmark (`bench/checkout.sh` runs it against a
//! release kernel on PostgreSQL). It starts the sandbox card processor in this process,
//! points the kernel's `sandbox-payments` adapter at it, stocks a bench catalog, and
//! then measures, with `BUYERS` concurrent buyers on blocking HTTP connections:
//!
//! 1. checkout: each buyer loops new cart → two lines (11 units: the tiered-volume
//!    rule applies to both; since subscriptions landed neither is on subscription, as
//!    guests cannot subscribe) → a card token from the
//!    processor (as the browser gets it; not timed) → checkout with that token. Orders
//!    per second, checkout latency, and add-to-cart latency under that load.
//! 2. add-to-cart, saturated: every buyer adds lines back to back (closed loop).
//! 3. add-to-cart at a set pace: every buyer adds one line every `PACE_MS` (open loop;
//!    latency is measured from when the request was due, so a slow answer that delays
//!    the next one is counted against the kernel).
//!
//! With `CUSTOMERS=1` every buyer is a signed-in customer (registered before the run), so
//! paid orders earn loyalty points through the bus (the bundled `loyalty-points` rule;
//! `LOYALTY=0` disables it first, for the A/B), and a fourth phase measures how long
//! after the checkout's answer an order's points show in `GET /api/v1/account/loyalty`
//! (each buyer checks out, then polls every 20 ms until its points show, then orders
//! again: the load is what the shop sustains with the points kept current).
//!
//! Every answer is checked: a checkout must come back 201 and `paid`, a cart must carry
//! the two rules' adjustments and no skipped rule. A wrong answer stops the run.
//!
//! Environment: `OLIVINE_URL` (http://127.0.0.1:18091), `OLIVINE_ADMIN_TOKEN`,
//! `BUYERS` (32), `PHASE_SECS` (20), `PACE_MS` (100), `PRODUCTS` (16), `PAY` (1; 0 checks
//! out without a card, leaving orders pending, to show the payment's share),
//! `CUSTOMERS` (0), `LOYALTY` (1).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::json;

mod common;
use common::{Client, card_token, env_or, start_processor, stock_catalog, summary};

struct Buyer {
    client: Client,
    processor: String,
    skus: Arc<Vec<String>>,
    n: usize,
    buyers: usize,
    /// Pay at checkout (`PAY=0` leaves the orders pending, to see the payment's share).
    pay: bool,
    /// The customer's `Authorization` header when buyers are signed in (`CUSTOMERS=1`).
    auth: Option<String>,
}

impl Buyer {
    fn as_guest(&self) -> Buyer {
        Buyer {
            client: self.client.clone(),
            processor: self.processor.clone(),
            skus: self.skus.clone(),
            n: self.n,
            buyers: self.buyers,
            pay: self.pay,
            auth: None,
        }
    }

    /// A request as this buyer (signed in or a guest); the answer must be a 2xx.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let headers: Vec<(&str, &str)> = self
            .auth
            .iter()
            .map(|a| ("authorization", a.as_str()))
            .collect();
        let url = format!("{}{path}", self.client.base);
        let (status, value) = self.client.send(method, &url, &headers, body)?;
        ensure!(
            (200..300).contains(&status),
            "{method} {path}: {status} {value}"
        );
        Ok(value)
    }

    fn new_cart(&self) -> anyhow::Result<String> {
        let cart = self.call("POST", "/api/v1/carts", None)?;
        Ok(cart["id"].as_str().context("cart id")?.to_owned())
    }

    /// Adds a line and checks the cart came back priced by both rules.
    fn add(&self, cart: &str, sku: &str, quantity: u32, subscription: bool) -> anyhow::Result<()> {
        let body = json!({"sku": sku, "quantity": quantity, "subscription": subscription});
        let cart = self.call("POST", &format!("/api/v1/carts/{cart}/lines"), Some(&body))?;
        ensure!(
            cart["skipped_rules"].as_array().is_some_and(Vec::is_empty),
            "a pricing rule was skipped: {cart}"
        );
        Ok(())
    }

    fn token(&self) -> anyhow::Result<String> {
        card_token(&self.client, &self.processor, "4242424242424242")
    }

    /// One order: a new cart, two lines, the checkout. Answers the order's number, when
    /// its answer came, and the add and checkout latencies.
    fn order(&self, round: usize) -> anyhow::Result<(String, Instant, [Duration; 3])> {
        let cart = self.new_cart()?;
        let first = &self.skus[round % self.skus.len()];
        let second = &self.skus[(round + 7) % self.skus.len()];
        let started = Instant::now();
        self.add(&cart, first, 6, false)?;
        let add_first = started.elapsed();
        let started = Instant::now();
        self.add(&cart, second, 5, false)?;
        let add_second = started.elapsed();
        let mut body = json!({"email": "buyer@example.com", "shipping_method": "standard",
            "shipping_address": {"name": "Ada Buyer", "line1": "Main 1", "city": "Utrecht",
                "postal_code": "3511 AB", "country": "NL"}});
        if self.pay {
            body["payment_token"] = json!(self.token()?);
        }
        let key = format!("bench-{}-{cart}", self.n);
        let mut headers = vec![("idempotency-key", key.as_str())];
        if let Some(auth) = &self.auth {
            headers.push(("authorization", auth.as_str()));
        }
        let url = format!("{}/api/v1/carts/{cart}/checkout", self.client.base);
        let started = Instant::now();
        let (status, order) = self.client.send("POST", &url, &headers, Some(&body))?;
        let answered = Instant::now();
        ensure!(status == 201, "checkout: {status} {order}");
        let expected = if self.pay { "paid" } else { "pending" };
        ensure!(
            order["status"] == expected,
            "checkout not {expected}: {order}"
        );
        ensure!(
            order["adjustments_minor"].as_i64().unwrap_or(0) < 0,
            "no discount on the order: {order}"
        );
        let number = order["number"].as_str().context("order number")?.to_owned();
        Ok((
            number,
            answered,
            [add_first, add_second, answered - started],
        ))
    }

    /// Orders, then waits for each order's points in the account: how long after the
    /// checkout's answer they showed.
    fn points_loop(&self, stop: &AtomicBool) -> anyhow::Result<Vec<Duration>> {
        let mut waits = Vec::new();
        let mut round = self.n;
        while !stop.load(Ordering::Relaxed) {
            let (number, answered, _) = self.order(round)?;
            round += 1;
            loop {
                let points = self.call("GET", "/api/v1/account/loyalty", None)?;
                let shown = points["entries"].as_array().is_some_and(|entries| {
                    entries.iter().any(|e| e["order_number"] == number.as_str())
                });
                if shown {
                    waits.push(answered.elapsed());
                    break;
                }
                ensure!(
                    answered.elapsed() < Duration::from_secs(30),
                    "no points for {number} after 30 s"
                );
                thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(waits)
    }

    fn checkout_loop(
        &self,
        stop: &AtomicBool,
    ) -> anyhow::Result<(usize, Vec<Duration>, Vec<Duration>)> {
        let (mut orders, mut checkouts, mut adds) = (0, Vec::new(), Vec::new());
        let mut round = self.n;
        while !stop.load(Ordering::Relaxed) {
            let (_, _, [first, second, checkout]) = self.order(round)?;
            round += 1;
            adds.extend([first, second]);
            checkouts.push(checkout);
            orders += 1;
        }
        Ok((orders, checkouts, adds))
    }

    /// Adds one unit at a time (rotating SKUs, every other line on subscription) to a
    /// cart filled past the volume tier, so both rules price every answer; a cart is
    /// replaced after 40 adds, untimed. At a pace, the buyers' turns are spread evenly
    /// over the period instead of all falling on the same instant.
    fn add_loop(&self, stop: &AtomicBool, pace: Option<Duration>) -> anyhow::Result<Vec<Duration>> {
        if self.auth.is_some() {
            // A customer has one open cart; these phases replace carts, as guests do.
            return self.as_guest().add_loop(stop, pace);
        }
        let mut adds = Vec::new();
        let mut i = self.n;
        let mut cart = String::new();
        let mut due = Instant::now()
            + pace.map_or(Duration::ZERO, |p| {
                p.mul_f64(self.n as f64 / self.buyers as f64)
            });
        while !stop.load(Ordering::Relaxed) {
            if adds.len().is_multiple_of(40) {
                cart = self.new_cart()?;
                self.add(&cart, &self.skus[i % self.skus.len()], 10, false)?;
            }
            let started = match pace {
                Some(pace) => {
                    let now = Instant::now();
                    if due > now {
                        thread::sleep(due - now);
                    }
                    let started = due;
                    due += pace;
                    started
                }
                None => Instant::now(),
            };
            let sku = &self.skus[i % self.skus.len()];
            self.add(&cart, sku, 1, i.is_multiple_of(2))?;
            adds.push(started.elapsed());
            i += 1;
        }
        Ok(adds)
    }
}

fn run_phase<T: Send + 'static>(
    buyers: &[Arc<Buyer>],
    seconds: u64,
    work: impl Fn(&Buyer, &AtomicBool) -> anyhow::Result<T> + Send + Sync + 'static,
) -> anyhow::Result<(Vec<T>, Duration)> {
    let stop = Arc::new(AtomicBool::new(false));
    let work = Arc::new(work);
    let started = Instant::now();
    let handles: Vec<_> = buyers
        .iter()
        .map(|buyer| {
            let (buyer, stop, work) = (buyer.clone(), stop.clone(), work.clone());
            thread::spawn(move || {
                let result = work(&buyer, &stop);
                if result.is_err() {
                    // One wrong answer ends the phase for everyone.
                    stop.store(true, Ordering::Relaxed);
                }
                result
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for handle in handles {
        results.push(
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("a buyer thread panicked"))??,
        );
    }
    Ok((results, started.elapsed()))
}

fn main() -> anyhow::Result<()> {
    let base = std::env::var("OLIVINE_URL").unwrap_or_else(|_| "http://127.0.0.1:18091".into());
    let admin = std::env::var("OLIVINE_ADMIN_TOKEN").context("OLIVINE_ADMIN_TOKEN")?;
    let buyers_n: usize = env_or("BUYERS", 32);
    let seconds: u64 = env_or("PHASE_SECS", 20);
    let pace_ms: u64 = env_or("PACE_MS", 100);
    let products: usize = env_or("PRODUCTS", 16);
    let pay = env_or("PAY", 1) != 0;
    let customers = env_or("CUSTOMERS", 0) != 0;
    let loyalty = env_or("LOYALTY", 1) != 0;

    let runtime = tokio::runtime::Runtime::new()?;
    let client = Client::new(&base, admin, buyers_n * 2);
    let (processor, _processor) = start_processor(&runtime, &client)?;
    let skus = Arc::new(stock_catalog(&client, products)?);
    eprintln!(
        "stocked {products} products; sandbox processor at {processor}; {buyers_n} buyers, {seconds} s per phase"
    );
    if !loyalty {
        client.admin(
            "PATCH",
            "/api/v1/admin/plugins/loyalty-points",
            &json!({"enabled": false}),
        )?;
    }
    let mut buyers: Vec<Arc<Buyer>> = Vec::with_capacity(buyers_n);
    for n in 0..buyers_n {
        let auth = if customers {
            Some(format!("Bearer {}", sign_up(&client, n)?))
        } else {
            None
        };
        buyers.push(Arc::new(Buyer {
            client: client.clone(),
            processor: processor.clone(),
            skus: skus.clone(),
            n,
            buyers: buyers_n,
            pay,
            auth,
        }));
    }
    eprintln!(
        "buyers are {}; loyalty rules {}",
        if customers {
            "signed-in customers"
        } else {
            "guests"
        },
        if loyalty { "on" } else { "off" }
    );

    eprintln!("warming up (3 s of checkouts, not counted)");
    run_phase(&buyers, 3, |b, stop| b.checkout_loop(stop))?;

    eprintln!("phase 1: checkout");
    let (results, elapsed) = run_phase(&buyers, seconds, |b, stop| b.checkout_loop(stop))?;
    let orders: usize = results.iter().map(|r| r.0).sum();
    let checkouts = results.iter().flat_map(|r| r.1.clone()).collect();
    let adds = results.into_iter().flat_map(|r| r.2).collect();
    println!(
        "checkout: {orders} {} orders in {:.1} s = {:.0} orders/s",
        if pay { "paid" } else { "unpaid" },
        elapsed.as_secs_f64(),
        orders as f64 / elapsed.as_secs_f64()
    );
    println!("  checkout latency:              {}", summary(checkouts));
    println!("  add-to-cart during checkouts:  {}", summary(adds));

    eprintln!("phase 2: add-to-cart, saturated");
    let (results, elapsed) = run_phase(&buyers, seconds, |b, stop| b.add_loop(stop, None))?;
    let adds: Vec<Duration> = results.into_iter().flatten().collect();
    println!(
        "add-to-cart, saturated: {:.0} adds/s",
        adds.len() as f64 / elapsed.as_secs_f64()
    );
    println!("  latency:                       {}", summary(adds));

    let pace = Duration::from_millis(pace_ms.max(1));
    eprintln!("phase 3: add-to-cart, one per buyer every {pace_ms} ms");
    let (results, elapsed) = run_phase(&buyers, seconds, move |b, stop| {
        b.add_loop(stop, Some(pace))
    })?;
    let adds: Vec<Duration> = results.into_iter().flatten().collect();
    println!(
        "add-to-cart at {:.0} adds/s offered ({buyers_n} buyers x 1 per {pace_ms} ms): {:.0} adds/s done",
        buyers_n as f64 * 1000.0 / pace_ms as f64,
        adds.len() as f64 / elapsed.as_secs_f64()
    );
    println!("  latency (from when due):       {}", summary(adds));

    if customers && loyalty && pay {
        // The loyalty processor's backlog from phase 1 is worked off first.
        let started = Instant::now();
        loop {
            let url = format!("{}/metrics", client.base);
            let text = client.agent.get(&url).call()?.body_mut().read_to_string()?;
            let pending = text
                .lines()
                .find_map(|l| l.strip_prefix("olivine_bus_pending_events "))
                .and_then(|v| v.trim().parse::<f64>().ok());
            if pending == Some(0.0) {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(300),
                "the bus never caught up"
            );
            thread::sleep(Duration::from_millis(100));
        }
        println!(
            "events all handled {:.1} s after phase 3",
            started.elapsed().as_secs_f64()
        );
        eprintln!(
            "phase 4: order.paid to points in the account (each buyer waits for its points before its next order)"
        );
        let (results, elapsed) = run_phase(&buyers, seconds, |b, stop| b.points_loop(stop))?;
        let waits: Vec<Duration> = results.into_iter().flatten().collect();
        println!(
            "points visible after the checkout's answer ({} orders, {:.0} paid orders/s): {}",
            waits.len(),
            waits.len() as f64 / elapsed.as_secs_f64(),
            summary(waits)
        );
    }
    Ok(())
}

/// Registers buyer `n` as a customer and signs in: answers the access token.
fn sign_up(client: &Client, n: usize) -> anyhow::Result<String> {
    let email = format!("buyer{n}-{}@example.com", std::process::id());
    let password = "bench password 123";
    client.kernel(
        "POST",
        "/api/v1/account/register",
        Some(&json!({"email": email, "password": password, "name": format!("Buyer {n}")})),
    )?;
    let session = client.kernel(
        "POST",
        "/api/v1/account/sign-in",
        Some(&json!({"email": email, "password": password})),
    )?;
    Ok(session["access_token"]
        .as_str()
        .context("access token")?
        .to_owned())
}
