//! A synthetic catalog for benchmarks (`olivine seed --synthetic N`): N variants over
//! supplements and skincare products of 1 to 4 variants each, with names, descriptions,
//! categories (the demo's), benefit, free-from and vegan tags, skin types, prices from 3
//! to 80 EUR and stock lots, some of them expired or too close to expiry to sell.
//!
//! The same N gives the same catalog (a fixed seed; lot dates are relative to today, as
//! the demo's are). Every product is checked with the admin API's rules
//! ([`validate_new_product`]) and then written with multi-row inserts in one transaction:
//! going through the API's write path one product at a time is far too slow for 100,000
//! variants. Being a bulk load, like a restore, it records no events and no audit entries,
//! so it loads only into an empty catalog, with the store stopped (a node rebuilds its
//! search index when it starts).

use std::collections::HashMap;

use chrono::{Days, Duration, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use crate::catalog::model::{
    NewCategory, NewProduct, NewVariant, ProductStatus, ProductType, validate_new_product,
};
use crate::inventory::NewLocation;
use crate::store::Db;

/// The seed of the catalog's random choices.
pub const SEED: u64 = 0x0011_71fe_5eed_2026;
/// The largest catalog made, in variants.
pub const MAX_VARIANTS: usize = 1_000_000;
/// The actor of the two locations and the categories it may create, and of its ledger.
const ACTOR: &str = "seed";
/// Products generated, checked and written per round (and per progress report).
const PAGE: usize = 500;
/// Bound parameters per statement: SQLite finds each `$n` by a linear search of the
/// statement's names, so a statement costs the square of its parameters (30,000 a
/// statement made the load 60 times slower than 500).
const MAX_BINDS: usize = 500;

#[derive(Debug, Default)]
pub struct SyntheticReport {
    pub products: usize,
    pub variants: usize,
    pub lots: usize,
    /// Demo categories that were missing and were created.
    pub categories_created: usize,
}

/// The demo catalog's categories and locations (the rest of the file is not needed).
#[derive(Deserialize)]
struct DemoParts {
    categories: Vec<NewCategory>,
    locations: Vec<NewLocation>,
}

/// Loads `variants` synthetic variants into an empty catalog in one transaction, telling
/// `progress` (variants done, of how many) after each round. A catalog with products is
/// refused and left alone.
pub async fn seed_synthetic(
    db: &Db,
    variants: usize,
    seed: u64,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> anyhow::Result<SyntheticReport> {
    anyhow::ensure!(
        (1..=MAX_VARIANTS).contains(&variants),
        "a synthetic catalog has 1 to {MAX_VARIANTS} variants, not {variants}"
    );
    let mut tx = db.begin().await?;
    let existing: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM products")
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    anyhow::ensure!(
        existing == 0,
        "the catalog already has {existing} product(s); a synthetic catalog is loaded only \
         into an empty one (use a new data directory or database)"
    );
    let mut report = SyntheticReport::default();
    let (categories, locations) = demo_parts(&mut tx, &mut report).await?;
    let words = Words::read()?;
    let mut rng = Rng(seed);
    let today = crate::time::today();
    let mut made = 0;
    let mut number = 0;
    while made < variants {
        let mut page = Vec::with_capacity(PAGE);
        while page.len() < PAGE && made < variants {
            number += 1;
            let count = (1 + rng.below(4)).min(variants - made);
            let product = plan_product(&mut rng, &words, number, count, today);
            made += product.input.variants.len();
            page.push(product);
        }
        write_page(&mut tx, &page, &categories, &locations, &mut report).await?;
        progress(made, variants);
    }
    tx.commit().await?;
    Ok(report)
}

/// Creates the demo's categories and locations that are missing (through the validated
/// paths: they are few); answers the ids of both by slug and code.
async fn demo_parts(
    conn: &mut AnyConnection,
    report: &mut SyntheticReport,
) -> anyhow::Result<(HashMap<String, i64>, Vec<i64>)> {
    let demo: DemoParts = serde_json::from_str(crate::seed::DEMO_CATALOG)?;
    for (position, category) in demo.categories.iter().enumerate() {
        let exists = sqlx::query("SELECT 1 FROM categories WHERE slug = $1")
            .bind(&category.slug)
            .fetch_optional(&mut *conn)
            .await?
            .is_some();
        if !exists {
            let mut category = category.clone();
            if category.position == 0 {
                category.position = position as i64;
            }
            crate::catalog::repo::create_category(conn, &category, ACTOR)
                .await
                .map_err(|e| anyhow::anyhow!("category {}: {}", category.slug, e.body().message))?;
            report.categories_created += 1;
        }
    }
    let mut categories = HashMap::new();
    for row in sqlx::query("SELECT slug, id FROM categories")
        .fetch_all(&mut *conn)
        .await?
    {
        categories.insert(row.try_get(0)?, row.try_get(1)?);
    }
    let mut locations = Vec::new();
    for location in &demo.locations {
        let found = sqlx::query("SELECT id FROM locations WHERE code = $1")
            .bind(&location.code)
            .fetch_optional(&mut *conn)
            .await?;
        let id = match found {
            Some(row) => row.try_get(0)?,
            None => {
                crate::inventory::create_location(conn, location, ACTOR)
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("location {}: {}", location.code, e.body().message)
                    })?
                    .id
            }
        };
        locations.push(id);
    }
    anyhow::ensure!(!locations.is_empty(), "the demo catalog has no locations");
    Ok((categories, locations))
}

// ---- the random choices -------------------------------------------------------------------

/// SplitMix64: small, and the same sequence on every platform and release (a library
/// generator may change its algorithm between versions, and the catalog would change).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// From 0 to `n - 1` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// From `low` to `high`, both included.
    fn between(&mut self, low: i64, high: i64) -> i64 {
        low + (self.next() % (high - low + 1).max(1) as u64) as i64
    }

    fn percent(&mut self, chance: u64) -> bool {
        self.next() % 100 < chance
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `count` different items of `items`, in their order there.
    fn some<'a, T>(&mut self, items: &'a [T], count: usize) -> Vec<&'a T> {
        let mut chosen: Vec<usize> = Vec::new();
        while chosen.len() < count.min(items.len()) {
            let i = self.below(items.len());
            if !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        chosen.sort_unstable();
        chosen.into_iter().map(|i| &items[i]).collect()
    }
}

// ---- word lists ---------------------------------------------------------------------------

/// Supplement actives, one a line: group | name | unit | amounts a serving | subcategory |
/// benefit tags | `v` when it can be vegan.
const SUPPLEMENT_ACTIVES: &str = "
vitamin|Vitamin D3|mcg|25 50 100|vitamins|immunity bone-health|v
vitamin|Vitamin C|mg|500 1000|vitamins|immunity energy skin-health|v
vitamin|Vitamin B12|mcg|500 1000|vitamins|energy brain-health|v
vitamin|Vitamin B6|mg|10 25|vitamins|energy stress|v
vitamin|Vitamin E|mg|67 134|vitamins|skin-health heart-health|v
vitamin|Vitamin K2|mcg|100 200|vitamins|bone-health heart-health|v
vitamin|Vitamin A|mcg|400 800|vitamins|immunity skin-health|v
vitamin|Folate|mcg|400 800|vitamins|energy brain-health|v
vitamin|Biotin|mcg|1000 5000|vitamins|skin-health energy|v
vitamin|Vitamin B Complex|mg|50 100|vitamins|energy stress focus|v
vitamin|Coenzyme Q10|mg|100 200|vitamins|heart-health energy|v
mineral|Magnesium|mg|200 300 400|minerals|sleep muscle-function stress|v
mineral|Zinc|mg|15 25|minerals|immunity skin-health|v
mineral|Iron|mg|14 20|minerals|energy|v
mineral|Calcium|mg|500 800|minerals|bone-health|v
mineral|Selenium|mcg|55 100|minerals|immunity skin-health|v
mineral|Potassium|mg|200 400|minerals|muscle-function heart-health|v
mineral|Iodine|mcg|150|minerals|energy focus|v
mineral|Chromium|mcg|40 200|minerals|energy|v
botanical|Ashwagandha|mg|300 600|herbals|stress sleep|v
botanical|Turmeric|mg|500 1000|herbals|joint-health|v
botanical|Rhodiola|mg|200 400|herbals|stress energy focus|v
botanical|Elderberry|mg|300 600|herbals|immunity|v
botanical|Echinacea|mg|250 500|herbals|immunity|v
botanical|Valerian|mg|300 450|sleep|sleep stress|v
botanical|Chamomile|mg|250 400|sleep|sleep gut-health|v
botanical|Ginseng|mg|200 400|herbals|energy focus|v
botanical|Milk Thistle|mg|300 600|herbals|gut-health|v
botanical|Lion's Mane|mg|500 1000|herbals|focus brain-health|v
botanical|Reishi|mg|400 800|herbals|immunity stress|v
botanical|Maca|mg|500 1500|herbals|energy|v
botanical|Ginger|mg|250 500|gut-health|gut-health|v
botanical|Holy Basil|mg|300 500|herbals|stress|v
botanical|Passionflower|mg|250 500|sleep|sleep stress|v
botanical|Lemon Balm|mg|300 600|sleep|sleep focus|v
botanical|Green Tea Extract|mg|250 500|herbals|energy focus|v
other|Omega-3 Fish Oil|mg|1000 2000|omega-3|heart-health brain-health|-
other|Algae Omega-3|mg|500 1000|omega-3|heart-health brain-health|v
other|Collagen Peptides|g|5 10|protein|skin-health joint-health|-
other|Probiotic Cultures|mg|50 100|gut-health|gut-health immunity|v
other|Creatine Monohydrate|g|3 5|sports-nutrition|strength energy|v
other|Whey Protein|g|25 30|protein|strength muscle-function|-
other|Pea Protein|g|20 25|protein|strength muscle-function|v
other|Electrolytes|mg|500 1000|sports-nutrition|hydration energy|v
other|L-Theanine|mg|100 200|sleep|focus stress sleep|v
other|Glucosamine|mg|750 1500|herbals|joint-health|-
";

/// The groups of [`SUPPLEMENT_ACTIVES`] and how many supplements in ten are of each.
const GROUPS: [(&str, usize); 4] = [
    ("vitamin", 3),
    ("mineral", 2),
    ("botanical", 3),
    ("other", 2),
];

/// How a mineral is bound: part of its name.
const MINERAL_FORMS: &str = "Glycinate, Citrate, Bisglycinate, Malate, Picolinate";

/// Extra ingredients a supplement may list after its main one.
const EXTRAS: [(&str, &str, f64); 7] = [
    ("Black pepper extract", "mg", 5.0),
    ("Vitamin C", "mg", 80.0),
    ("Zinc", "mg", 5.0),
    ("Vitamin B6", "mg", 1.4),
    ("Rice flour", "mg", 100.0),
    ("Sunflower lecithin", "mg", 20.0),
    ("Inulin", "mg", 200.0),
];

const SUPPLEMENT_QUALIFIERS: &str = "Daily, Advanced, Pure, Complete, Gentle, High Strength, \
    Active, Night, Morning, Organic, Liposomal, Essential, Extra Strength, Balance";

/// Supplement forms (`SupplementForm`), what the name calls them, and what one holds.
const FORMS: [(&str, &str, &str); 6] = [
    ("capsules", "Capsules", "capsule"),
    ("tablets", "Tablets", "tablet"),
    ("softgels", "Softgels", "softgel"),
    ("powder", "Powder", "scoop"),
    ("liquid", "Drops", "ml"),
    ("gummies", "Gummies", "gummy"),
];
const POWDER: (&str, &str, &str) = FORMS[3];

const BENEFIT_SENTENCES: [(&str, &str); 14] = [
    (
        "immunity",
        "It contributes to the normal function of the immune system.",
    ),
    (
        "sleep",
        "Part of a calm evening routine that helps you wind down.",
    ),
    (
        "energy",
        "It contributes to the reduction of tiredness and fatigue.",
    ),
    ("stress", "Chosen for days that ask a lot of you."),
    ("focus", "For clear thinking through long working days."),
    (
        "bone-health",
        "It contributes to the maintenance of normal bones.",
    ),
    (
        "heart-health",
        "It contributes to the normal function of the heart.",
    ),
    ("brain-health", "It contributes to normal brain function."),
    ("joint-health", "For joints that keep you moving."),
    ("gut-health", "Gentle support for everyday digestion."),
    (
        "skin-health",
        "It contributes to the maintenance of normal skin.",
    ),
    (
        "muscle-function",
        "It contributes to normal muscle function.",
    ),
    (
        "strength",
        "For training that builds strength week after week.",
    ),
    ("hydration", "Replaces the salts lost through sweat."),
];

/// Skincare kinds, one a line: category | routine step (`RoutineStep`) | names |
/// how it is applied.
const SKINCARE_KINDS: &str = "
cleansers|cleanse|Gel Cleanser, Cream Cleanser, Cleansing Balm, Foaming Wash, Cleansing Oil, Micellar Water|Massage onto damp skin morning and evening, then rinse with lukewarm water.
toners|tone|Toner, Essence, Facial Mist|Press into clean skin with the palms or a cotton pad before serum.
serums|serum|Serum, Booster, Ampoule, Concentrate|Smooth three drops over face and neck after cleansing, before moisturiser.
moisturisers|moisturise|Moisturiser, Day Cream, Night Cream, Gel Cream, Lotion|Apply a pea-sized amount to face and neck as the last step of your routine.
sun-care|protect|Sun Fluid SPF30, Sunscreen SPF50, Daily Defence SPF50|Apply generously as the last morning step; reapply every two hours in the sun.
eye-care|treat|Eye Cream, Eye Gel, Eye Serum|Tap a small amount around the orbital bone morning and night.
masks|mask|Clay Mask, Sleeping Mask, Overnight Mask, Hydrating Mask|Spread an even layer over clean skin once or twice a week.
lip-care|protect|Lip Balm, Lip Mask, Lip Oil|Apply to the lips as often as needed.
";

/// Skincare actives, their usual strength and the benefit tag they are sold for.
const SKINCARE_ACTIVES: [(&str, &str, &str); 20] = [
    ("Niacinamide", "10%", "blemish-prone"),
    ("Retinol", "0.3%", "anti-ageing"),
    ("Hyaluronic Acid", "2%", "hydrating"),
    ("Vitamin C", "15%", "brightening"),
    ("Ceramide", "1%", "barrier-repair"),
    ("Peptide", "5%", "anti-ageing"),
    ("Squalane", "3%", "hydrating"),
    ("Salicylic Acid", "2%", "blemish-prone"),
    ("Glycolic Acid", "7%", "exfoliating"),
    ("Azelaic Acid", "10%", "brightening"),
    ("Bakuchiol", "1%", "anti-ageing"),
    ("Centella Asiatica", "5%", "soothing"),
    ("Panthenol", "5%", "soothing"),
    ("Allantoin", "0.5%", "soothing"),
    ("Zinc Oxide", "20%", "protecting"),
    ("Green Tea", "2%", "antioxidant"),
    ("Aloe Vera", "10%", "soothing"),
    ("Rosehip Oil", "5%", "brightening"),
    ("Caffeine", "5%", "depuffing"),
    ("Lactic Acid", "5%", "exfoliating"),
];

const SKINCARE_SUPPORTING: &str = "Glycerin, Panthenol, Allantoin, Squalane, Shea butter, \
    Jojoba oil, Licorice root extract, Oat extract, Tocopherol, Beta-glucan";

const SKINCARE_QUALIFIERS: &str = "Hydrating, Brightening, Soothing, Clarifying, Firming, \
    Calming, Gentle, Renewing, Barrier, Daily, Overnight, Balancing, Rich, Light";

/// `SkinType`, in its order.
const SKIN_TYPES: [&str; 5] = ["dry", "normal", "oily", "combination", "sensitive"];

const SKINCARE_ML: [i64; 7] = [15, 30, 50, 75, 100, 150, 200];
const COUNTS: [i64; 6] = [30, 60, 90, 120, 180, 240];
const POWDER_GRAMS: [i64; 4] = [150, 250, 500, 1000];
const LIQUID_ML: [i64; 4] = [15, 30, 50, 100];

struct Active {
    group: &'static str,
    name: &'static str,
    unit: &'static str,
    amounts: Vec<f64>,
    category: &'static str,
    benefits: Vec<&'static str>,
    vegan: bool,
}

struct SkincareKind {
    category: &'static str,
    step: &'static str,
    nouns: Vec<&'static str>,
    application: &'static str,
}

/// The word lists, read from the tables above.
struct Words {
    /// Actives by group, in the order of [`GROUPS`].
    actives: Vec<Vec<Active>>,
    mineral_forms: Vec<&'static str>,
    supplement_qualifiers: Vec<&'static str>,
    skincare: Vec<SkincareKind>,
    skincare_supporting: Vec<&'static str>,
    skincare_qualifiers: Vec<&'static str>,
}

fn list(text: &'static str) -> Vec<&'static str> {
    text.split(',').map(str::trim).collect()
}

/// The non-empty lines of a table, split at `|` into `N` cells.
fn table<const N: usize>(text: &'static str) -> anyhow::Result<Vec<[&'static str; N]>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let cells: Vec<&'static str> = line.split('|').map(str::trim).collect();
            <[&str; N]>::try_from(cells)
                .map_err(|_| anyhow::anyhow!("a word table line has not {N} cells: {line}"))
        })
        .collect()
}

impl Words {
    fn read() -> anyhow::Result<Words> {
        let mut actives: Vec<Vec<Active>> = GROUPS.iter().map(|_| Vec::new()).collect();
        for [group, name, unit, amounts, category, benefits, vegan] in table(SUPPLEMENT_ACTIVES)? {
            let at = GROUPS
                .iter()
                .position(|(g, _)| *g == group)
                .ok_or_else(|| anyhow::anyhow!("unknown supplement group `{group}`"))?;
            actives[at].push(Active {
                group,
                name,
                unit,
                amounts: amounts
                    .split_whitespace()
                    .map(str::parse)
                    .collect::<Result<_, _>>()?,
                category,
                benefits: benefits.split_whitespace().collect(),
                vegan: vegan == "v",
            });
        }
        let skincare = table(SKINCARE_KINDS)?
            .into_iter()
            .map(|[category, step, nouns, application]| SkincareKind {
                category,
                step,
                nouns: list(nouns),
                application,
            })
            .collect();
        Ok(Words {
            actives,
            mineral_forms: list(MINERAL_FORMS),
            supplement_qualifiers: list(SUPPLEMENT_QUALIFIERS),
            skincare,
            skincare_supporting: list(SKINCARE_SUPPORTING),
            skincare_qualifiers: list(SKINCARE_QUALIFIERS),
        })
    }
}

// ---- planning a product -------------------------------------------------------------------

struct Planned {
    input: NewProduct,
    created_at: String,
    lots: Vec<PlannedLot>,
}

struct PlannedLot {
    /// Its variant's index in `input.variants`.
    variant: usize,
    location: usize,
    batch: String,
    manufactured_on: String,
    expires_on: String,
    quantity: i64,
}

/// What a product type's planner decides.
struct Drafted {
    name: String,
    description: String,
    categories: Vec<String>,
    tags: Vec<String>,
    attributes: serde_json::Value,
    /// Each variant's title, its one option and its weight in grams.
    variants: Vec<(String, (&'static str, String), i64)>,
}

/// Lowercase words joined by hyphens.
fn slugify(text: &str) -> String {
    let mut slug = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if c != '\'' && !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

/// `count` consecutive sizes of `sizes` from a random start.
fn sizes(rng: &mut Rng, sizes: &[i64], count: usize) -> Vec<i64> {
    let count = count.min(sizes.len());
    let start = rng.below(sizes.len() - count + 1);
    sizes[start..start + count].to_vec()
}

/// Prices for sizes going up: from 2.99 to 79.99 EUR, ending in 99.
fn prices(rng: &mut Rng, count: usize) -> Vec<i64> {
    let mut price = rng.between(299, 3500) as f64;
    let mut prices = Vec::with_capacity(count);
    for _ in 0..count {
        prices.push(((price as i64) / 100 * 100 + 99).clamp(299, 7999));
        price *= 1.4 + rng.below(40) as f64 / 100.0;
    }
    prices
}

fn amount_text(amount: f64) -> String {
    if amount.fract() == 0.0 {
        format!("{amount:.0}")
    } else {
        format!("{amount}")
    }
}

/// `a`, `a and b`, `a, b and c`.
fn join_words(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

fn plan_product(
    rng: &mut Rng,
    words: &Words,
    number: usize,
    variants: usize,
    today: NaiveDate,
) -> Planned {
    let supplement = rng.percent(60);
    let mut drafted = if supplement {
        plan_supplement(rng, words, variants)
    } else {
        plan_skincare(rng, words, variants)
    };
    let free_from: &[(&str, u64)] = if supplement {
        &[("gluten-free", 50), ("dairy-free", 35), ("soy-free", 30)]
    } else {
        &[("fragrance-free", 50), ("soy-free", 10)]
    };
    for (tag, chance) in free_from {
        if rng.percent(*chance) {
            drafted.tags.push((*tag).to_owned());
        }
    }
    let prices = prices(rng, drafted.variants.len());
    let input = NewProduct {
        slug: format!("{}-{number}", slugify(&drafted.name)),
        name: drafted.name,
        product_type: if supplement {
            ProductType::Supplement
        } else {
            ProductType::Skincare
        },
        description: drafted.description,
        // One in fifty is not on sale yet.
        status: if rng.percent(2) {
            ProductStatus::Draft
        } else {
            ProductStatus::Active
        },
        categories: drafted.categories,
        tags: drafted.tags,
        subscription_intervals: None,
        attributes: drafted.attributes,
        variants: drafted
            .variants
            .into_iter()
            .zip(prices)
            .enumerate()
            .map(
                |(i, ((title, (option, value), weight), price))| NewVariant {
                    sku: format!("SYN-{number:06}-{}", i + 1),
                    title,
                    options: [(option.to_owned(), value)].into(),
                    price_minor: price,
                    currency: "EUR".to_owned(),
                    weight_grams: weight,
                    components: Vec::new(),
                },
            )
            .collect(),
    };
    let mut lots = Vec::new();
    for variant in 0..input.variants.len() {
        // Most variants are stocked; some lots are past their date, too close to it to
        // sell (the demo's minimum shelf life is 60 days), or sold out.
        if !rng.percent(85) {
            continue;
        }
        for n in 0..1 + rng.below(2) {
            let kind = rng.below(100);
            let expires = if kind < 80 {
                today + Days::new(rng.between(120, 900) as u64)
            } else if kind < 92 {
                today + Days::new(rng.between(1, 45) as u64)
            } else {
                today - Days::new(rng.between(1, 60) as u64)
            };
            let manufactured = (expires - Days::new(rng.between(540, 900) as u64)).min(today);
            lots.push(PlannedLot {
                variant,
                location: rng.below(2),
                batch: format!("SY{number:06}{}-{n}", variant + 1),
                manufactured_on: crate::time::format_date(manufactured),
                expires_on: crate::time::format_date(expires),
                quantity: if rng.percent(5) {
                    0
                } else {
                    rng.between(5, 600)
                },
            });
        }
    }
    let age = Duration::seconds(rng.between(0, 2 * 365 * 86_400));
    Planned {
        input,
        created_at: crate::time::format_timestamp(Utc::now() - age),
        lots,
    }
}

fn plan_supplement(rng: &mut Rng, words: &Words, variants: usize) -> Drafted {
    // Which group, by the shares of GROUPS.
    let mut roll = rng.below(GROUPS.iter().map(|(_, share)| share).sum());
    let mut group = 0;
    while group + 1 < GROUPS.len() && roll >= GROUPS[group].1 {
        roll -= GROUPS[group].1;
        group += 1;
    }
    let main = rng.pick(&words.actives[group]);
    let active_name = if main.group == "mineral" {
        format!("{} {}", main.name, rng.pick(&words.mineral_forms))
    } else {
        main.name.to_owned()
    };
    // Proteins, collagen and creatine (dosed in grams) come as powders only.
    let (form, form_word, unit_word) = if main.unit == "g" {
        POWDER
    } else {
        *rng.pick(&FORMS)
    };
    let qualifier = if rng.percent(70) {
        format!("{} ", rng.pick(&words.supplement_qualifiers))
    } else {
        String::new()
    };
    let name = format!("{qualifier}{active_name} {form_word}");
    let amount = rng.pick(&main.amounts).max(1.0);
    let mut ingredients = vec![json!({"name": active_name, "amount": amount, "unit": main.unit})];
    let extras = rng.below(3);
    for (extra, unit, amount) in rng.some(&EXTRAS, extras) {
        if *extra != main.name {
            ingredients.push(json!({"name": extra, "amount": amount, "unit": unit}));
        }
    }
    let (sizes, variants): (Vec<i64>, Vec<_>) = match form {
        "powder" => {
            let grams = sizes(rng, &POWDER_GRAMS, variants);
            let drafted = grams.iter().map(|g| {
                let text = if *g >= 1000 {
                    format!("{}kg", g / 1000)
                } else {
                    format!("{g}g")
                };
                (text.clone(), ("size", text), g + 60)
            });
            (grams.clone(), drafted.collect())
        }
        "liquid" => {
            let ml = sizes(rng, &LIQUID_ML, variants);
            let drafted = ml
                .iter()
                .map(|m| (format!("{m}ml"), ("size", format!("{m}ml")), m + 40));
            (ml.clone(), drafted.collect())
        }
        _ => {
            let counts = sizes(rng, &COUNTS, variants);
            let drafted = counts
                .iter()
                .map(|n| (format!("{n} {form}"), ("count", n.to_string()), n / 2 + 40));
            (counts.clone(), drafted.collect())
        }
    };
    // The smallest size decides the servings the attributes state.
    let smallest = sizes.first().copied().unwrap_or(30);
    let (serving_size, servings) = match form {
        "powder" => {
            // A scoop of the active itself, or 5 g of a powder that carries it.
            let grams = if main.unit == "g" { amount as i64 } else { 5 };
            (format!("{grams}g"), (smallest / grams).max(1))
        }
        "liquid" => ("1ml".to_owned(), smallest),
        _ => {
            let per_serving = 1 + rng.below(2) as i64;
            let plural = if per_serving > 1 { "s" } else { "" };
            (
                format!("{per_serving} {unit_word}{plural}"),
                (smallest / per_serving).max(1),
            )
        }
    };
    let wanted = 1 + rng.below(2);
    let mut tags: Vec<String> = rng
        .some(&main.benefits, wanted)
        .into_iter()
        .map(|b| (*b).to_owned())
        .collect();
    let mut categories = vec!["supplements".to_owned(), main.category.to_owned()];
    if tags.iter().any(|b| b == "sleep") && main.category != "sleep" {
        categories.push("sleep".to_owned());
    }
    let form_phrase = match form {
        "powder" => "an unflavoured powder that mixes into water or a smoothie".to_owned(),
        "liquid" => "easy-to-dose drops".to_owned(),
        other => format!("easy-to-swallow {other}"),
    };
    let benefit_sentence = BENEFIT_SENTENCES
        .iter()
        .find(|(b, _)| tags.first().is_some_and(|first| first == b))
        .map_or("", |(_, sentence)| sentence);
    let description = format!(
        "{name} gives you {} {} of {active_name} per serving in {form_phrase}. \
         {benefit_sentence} Made in small batches and tested by an independent laboratory.",
        amount_text(amount),
        main.unit
    );
    if main.vegan && rng.percent(55) {
        tags.push("vegan".to_owned());
    }
    let attributes = json!({
        "form": form,
        "ingredients": ingredients,
        "serving_size": serving_size,
        "servings_per_container": servings,
        "usage": format!("Take {serving_size} daily with food."),
        "allergens": [],
        "warnings": "Food supplement. Do not exceed the recommended daily dose. \
                     Keep out of reach of young children.",
        "disclaimer": "These statements have not been evaluated by the Food and Drug \
                       Administration. This product is not intended to diagnose, treat, \
                       cure, or prevent any disease."
    });
    Drafted {
        name,
        description,
        categories,
        tags,
        attributes,
        variants,
    }
}

fn plan_skincare(rng: &mut Rng, words: &Words, variants: usize) -> Drafted {
    let kind = rng.pick(&words.skincare);
    let &(active, strength, benefit) = rng.pick(&SKINCARE_ACTIVES);
    let noun = rng.pick(&kind.nouns);
    let qualifier = rng.pick(&words.skincare_qualifiers);
    let name = format!("{qualifier} {active} {noun}");
    let wanted = 1 + rng.below(3);
    let skin_types: Vec<&str> = rng.some(&SKIN_TYPES, wanted).into_iter().copied().collect();
    let mut key_ingredients = vec![format!("{active} {strength}")];
    let supporting = rng.below(3);
    for other in rng.some(&words.skincare_supporting, supporting) {
        if *other != active {
            key_ingredients.push((*other).to_owned());
        }
    }
    let ml = sizes(rng, &SKINCARE_ML, variants);
    let mut tags = vec![benefit.to_owned()];
    if rng.percent(60) {
        tags.push("vegan".to_owned());
    }
    let description = format!(
        "A {} {} with {active} at {strength} for {} skin. {} Dermatologically tested and \
         made without parabens.",
        qualifier.to_lowercase(),
        noun.to_lowercase(),
        join_words(&skin_types),
        kind.application
    );
    let attributes = json!({
        "skin_types": skin_types,
        "volume_ml": ml.first().copied().unwrap_or(30),
        "routine_step": kind.step,
        "application": kind.application,
        "key_ingredients": key_ingredients,
        "period_after_opening_months": *rng.pick(&[6, 12, 24]),
    });
    Drafted {
        name,
        description,
        categories: vec!["skincare".to_owned(), kind.category.to_owned()],
        tags,
        attributes,
        variants: ml
            .iter()
            .map(|m| (format!("{m}ml"), ("size", format!("{m}ml")), m + 50))
            .collect(),
    }
}

// ---- writing ------------------------------------------------------------------------------

/// A value bound into a multi-row insert.
enum Cell {
    Int(i64),
    Text(String),
}

/// Inserts `cells` as rows of `columns` into `into` (`table (col, …)`), as many rows a
/// statement as the bind limit allows; answers the rows `returning` names (if any).
async fn insert(
    conn: &mut AnyConnection,
    into: &str,
    columns: usize,
    cells: &[Cell],
    returning: &str,
) -> anyhow::Result<Vec<AnyRow>> {
    let mut answered = Vec::new();
    let rows_a_statement = (MAX_BINDS / columns).max(1);
    for chunk in cells.chunks(rows_a_statement * columns) {
        let mut sql = format!(
            "INSERT INTO {into} VALUES {}",
            crate::store::value_rows(chunk.len() / columns, columns)
        );
        if !returning.is_empty() {
            sql.push_str(" RETURNING ");
            sql.push_str(returning);
        }
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for cell in chunk {
            query = match cell {
                Cell::Int(value) => query.bind(*value),
                Cell::Text(value) => query.bind(value.as_str()),
            };
        }
        if returning.is_empty() {
            query.execute(&mut *conn).await?;
        } else {
            answered.extend(query.fetch_all(&mut *conn).await?);
        }
    }
    Ok(answered)
}

async fn write_page(
    conn: &mut AnyConnection,
    page: &[Planned],
    categories: &HashMap<String, i64>,
    locations: &[i64],
    report: &mut SyntheticReport,
) -> anyhow::Result<()> {
    let mut cells = Vec::with_capacity(page.len() * 9);
    for planned in page {
        let input = &planned.input;
        // The API's rules, so the rows are what the admin API would have written.
        let attributes = validate_new_product(input)
            .map_err(|e| anyhow::anyhow!("generated product {} is invalid: {e:?}", input.slug))?;
        cells.extend([
            Cell::Text(input.slug.clone()),
            Cell::Text(input.name.clone()),
            Cell::Text(input.product_type.as_str().to_owned()),
            Cell::Text(input.description.clone()),
            Cell::Text(input.status.as_str().to_owned()),
            Cell::Text(attributes.to_string()),
            Cell::Int(1),
            Cell::Text(planned.created_at.clone()),
            Cell::Text(planned.created_at.clone()),
        ]);
    }
    let rows = insert(
        conn,
        "products (slug, name, product_type, description, status, attributes, version, created_at, updated_at)",
        9,
        &cells,
        "id, slug",
    )
    .await?;
    let mut product_ids: HashMap<String, i64> = HashMap::with_capacity(rows.len());
    for row in rows {
        product_ids.insert(row.try_get(1)?, row.try_get(0)?);
    }
    let id_of = |slug: &str| {
        product_ids
            .get(slug)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("product {slug} was not inserted"))
    };

    let (mut links, mut tags, mut variants) = (Vec::new(), Vec::new(), Vec::new());
    for planned in page {
        let product_id = id_of(&planned.input.slug)?;
        for slug in &planned.input.categories {
            let category = categories
                .get(slug)
                .ok_or_else(|| anyhow::anyhow!("no category `{slug}`"))?;
            links.extend([Cell::Int(product_id), Cell::Int(*category)]);
        }
        for tag in &planned.input.tags {
            tags.extend([Cell::Int(product_id), Cell::Text(tag.clone())]);
        }
        for (position, variant) in planned.input.variants.iter().enumerate() {
            variants.extend([
                Cell::Int(product_id),
                Cell::Text(variant.sku.clone()),
                Cell::Text(variant.title.clone()),
                Cell::Text(serde_json::to_string(&variant.options)?),
                Cell::Int(variant.price_minor),
                Cell::Text(variant.currency.clone()),
                Cell::Int(variant.weight_grams),
                Cell::Int(position as i64),
                Cell::Text(planned.created_at.clone()),
                Cell::Text(planned.created_at.clone()),
            ]);
        }
    }
    insert(
        conn,
        "product_categories (product_id, category_id)",
        2,
        &links,
        "",
    )
    .await?;
    insert(conn, "product_tags (product_id, tag)", 2, &tags, "").await?;
    let rows = insert(
        conn,
        "variants (product_id, sku, title, options, price_minor, currency, weight_grams, position, created_at, updated_at)",
        10,
        &variants,
        "id, sku",
    )
    .await?;
    let mut variant_ids: HashMap<String, i64> = HashMap::with_capacity(rows.len());
    for row in rows {
        variant_ids.insert(row.try_get(1)?, row.try_get(0)?);
    }

    let now = crate::time::now();
    let mut lots = Vec::new();
    for planned in page {
        for lot in &planned.lots {
            let sku = &planned.input.variants[lot.variant].sku;
            let variant = variant_ids
                .get(sku)
                .ok_or_else(|| anyhow::anyhow!("variant {sku} was not inserted"))?;
            lots.extend([
                Cell::Int(*variant),
                Cell::Int(locations[lot.location % locations.len()]),
                Cell::Text(lot.batch.clone()),
                Cell::Text(lot.manufactured_on.clone()),
                Cell::Text(lot.expires_on.clone()),
                Cell::Int(lot.quantity),
                Cell::Text(now.clone()),
                Cell::Text(now.clone()),
            ]);
        }
    }
    let rows = insert(
        conn,
        "lots (variant_id, location_id, batch, manufactured_on, expires_on, quantity, created_at, updated_at)",
        8,
        &lots,
        "id, variant_id, batch, quantity",
    )
    .await?;
    // Each lot's stock came in as received, as the ledger would have it.
    let mut ledger = Vec::with_capacity(rows.len() * 9);
    for row in &rows {
        let quantity: i64 = row.try_get(3)?;
        ledger.extend([
            Cell::Int(row.try_get(0)?),
            Cell::Int(row.try_get(1)?),
            Cell::Int(quantity),
            Cell::Int(quantity),
            Cell::Text("received".to_owned()),
            Cell::Text(ACTOR.to_owned()),
            Cell::Text("synthetic catalog".to_owned()),
            Cell::Text(row.try_get(2)?),
            Cell::Text(now.clone()),
        ]);
    }
    insert(
        conn,
        "stock_ledger (lot_id, variant_id, delta, quantity_after, reason, actor, note, reference, created_at)",
        9,
        &ledger,
        "",
    )
    .await?;
    report.products += page.len();
    report.variants += variants.len() / 10;
    report.lots += rows.len();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_are_valid_and_the_same_for_the_same_seed() {
        let words = Words::read().unwrap();
        let today = crate::time::today();
        let plan = |seed| {
            let mut rng = Rng(seed);
            (1..=400)
                .map(|n| plan_product(&mut rng, &words, n, 1 + n % 4, today).input)
                .collect::<Vec<_>>()
        };
        let (first, again) = (plan(SEED), plan(SEED));
        for (a, b) in first.iter().zip(&again) {
            assert_eq!((&a.slug, &a.name, &a.tags), (&b.slug, &b.name, &b.tags));
            let checked = validate_new_product(a);
            assert!(checked.is_ok(), "{}: {checked:?}", a.slug);
            let prices: Vec<i64> = a.variants.iter().map(|v| v.price_minor).collect();
            assert!(
                prices.iter().all(|p| (299..=7999).contains(p)),
                "{prices:?}"
            );
        }
        assert!(
            first
                .iter()
                .any(|p| p.product_type == ProductType::Skincare)
        );
        assert!(first.iter().any(|p| p.tags.iter().any(|t| t == "vegan")));
        assert!(words.actives.iter().all(|group| !group.is_empty()));
    }

    #[test]
    fn slugs_are_slugs() {
        assert_eq!(slugify("Lion's Mane Capsules"), "lions-mane-capsules");
        assert_eq!(slugify("Omega-3 Fish Oil + K2"), "omega-3-fish-oil-k2");
    }
}
