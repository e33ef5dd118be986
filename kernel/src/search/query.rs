//! A shopper's search: the query string read into words (never handed to tantivy's
//! query parser, so `"`, `(` or `AND` are only words), synonyms expanded, each word
//! matched on the stemmed fields with boosts (BM25), with typos (one from 5 letters, two
//! from 9, none in short words or numbers) and, for the last word, as a prefix; the
//! facet filters (OR within a facet, AND across), facet counts (each facet counted with
//! the other facets' filters, so its own options stay visible), sorting and paging.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use serde::Serialize;
use tantivy::collector::{Collector, Count, FacetCollector, FacetCounts, TopDocs};
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, RangeQuery,
    TermQuery,
};
use tantivy::schema::{Facet, IndexRecordOption, Value};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{DocAddress, Order, Searcher, TantivyDocument, Term};
use utoipa::ToSchema;

use super::{Fields, PRICE_BUCKETS, SearchHit, SearchIndex, synonyms};
use crate::error::{Error, FieldError, Result};

/// The longest query read.
pub const MAX_QUERY_CHARS: usize = 200;
/// Words past this many are ignored.
const MAX_WORDS: usize = 12;
pub const MAX_PER_PAGE: usize = 48;
const DEFAULT_PER_PAGE: usize = 24;
/// Paging stops here (deeper pages are for crawlers, not shoppers).
pub const MAX_PAGE: usize = 200;
/// The highest price a filter takes, in minor units.
const MAX_PRICE: u64 = 1_000_000_000_000;
/// The most values one facet filter may hold.
const MAX_VALUES: usize = 30;

/// The facets, in the order pages show them.
pub const FACETS: [&str; 10] = [
    "type",
    "category",
    "benefit",
    "skin_type",
    "free_from",
    "vegan",
    "form",
    "size",
    "price",
    "in_stock",
];

/// Fields a word is scored on, with their boosts.
fn scored_fields(f: &Fields) -> [(tantivy::schema::Field, f32); 6] {
    [
        (f.name, 3.0),
        (f.categories, 2.0),
        (f.benefits, 2.0),
        (f.skin_types, 1.5),
        (f.ingredients, 1.5),
        (f.description, 1.0),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    #[default]
    Relevance,
    PriceAsc,
    PriceDesc,
    Newest,
    BestSelling,
}

impl Sort {
    fn parse(text: &str) -> Option<Sort> {
        Some(match text {
            "relevance" => Sort::Relevance,
            "price_asc" => Sort::PriceAsc,
            "price_desc" => Sort::PriceDesc,
            "newest" => Sort::Newest,
            "best_selling" => Sort::BestSelling,
            _ => return None,
        })
    }
}

/// A search as the API and the storefront read it from a query string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchRequest {
    pub q: String,
    /// Facet → selected values (`vegan` and `in_stock` take `true`).
    pub filters: BTreeMap<&'static str, BTreeSet<String>>,
    pub price_min: Option<u64>,
    pub price_max: Option<u64>,
    pub sort: Sort,
    pub page: usize,
    pub per_page: usize,
}

impl SearchRequest {
    /// Reads `q`, `sort`, `page`, `per_page`, `price_min`, `price_max` (minor units) and
    /// the facets (repeatable: `category=serums&category=toners`). An unknown parameter
    /// or a bad value is a 400 naming it; empty values are ignored (forms send them).
    pub fn from_query(query: Option<&str>) -> Result<SearchRequest> {
        let mut request = SearchRequest {
            page: 1,
            per_page: DEFAULT_PER_PAGE,
            ..SearchRequest::default()
        };
        let mut problems = Vec::new();
        let mut bad = |field: &str, message: &str| problems.push(FieldError::new(field, message));
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let value = value.trim();
            match key.as_ref() {
                "q" => {
                    if value.chars().count() > MAX_QUERY_CHARS {
                        bad("q", "must be at most 200 characters");
                    }
                    request.q = value.to_owned();
                }
                _ if value.is_empty() => {}
                "sort" => match Sort::parse(value) {
                    Some(sort) => request.sort = sort,
                    None => bad(
                        "sort",
                        "must be relevance, price_asc, price_desc, newest or best_selling",
                    ),
                },
                "page" => match value.parse::<usize>() {
                    Ok(page) if (1..=MAX_PAGE).contains(&page) => request.page = page,
                    _ => bad("page", "must be a whole number from 1 to 200"),
                },
                "per_page" => match value.parse::<usize>() {
                    Ok(n) if (1..=MAX_PER_PAGE).contains(&n) => request.per_page = n,
                    _ => bad("per_page", "must be a whole number from 1 to 48"),
                },
                "price_min" | "price_max" => match value.parse::<u64>() {
                    Ok(amount) if amount > MAX_PRICE => {
                        bad(&key, "must be at most 1000000000000 minor units")
                    }
                    Ok(amount) if key == "price_min" => request.price_min = Some(amount),
                    Ok(amount) => request.price_max = Some(amount),
                    Err(_) => bad(
                        &key,
                        "must be a whole number of minor units (cents), 0 or more",
                    ),
                },
                other => match FACETS.iter().find(|f| **f == other) {
                    Some(&facet) => {
                        let value = match facet {
                            "vegan" | "in_stock" => match value {
                                "true" | "on" | "1" => "true",
                                // Not narrowed: both kinds.
                                "false" | "off" | "0" => continue,
                                _ => {
                                    bad(facet, "must be true or false");
                                    continue;
                                }
                            },
                            "price" if price_range(value).is_none() => {
                                bad(
                                    "price",
                                    "must be a range of minor units as from-to, e.g. 1000-2000 or 5000-",
                                );
                                continue;
                            }
                            _ if value.chars().count() > 100 => {
                                bad(facet, "a value is at most 100 characters");
                                continue;
                            }
                            _ => value,
                        };
                        let values = request.filters.entry(facet).or_default();
                        values.insert(value.to_owned());
                        if values.len() > MAX_VALUES {
                            bad(facet, "at most 30 values");
                        }
                    }
                    None => bad(
                        &other.chars().take(50).collect::<String>(),
                        "is not a search parameter",
                    ),
                },
            }
        }
        if let (Some(min), Some(max)) = (request.price_min, request.price_max)
            && min > max
        {
            bad("price_max", "must not be below price_min");
        }
        problems.dedup();
        if problems.is_empty() {
            Ok(request)
        } else {
            Err(Error::BadRequest {
                message: "the search parameters are not valid".to_owned(),
                fields: problems,
            })
        }
    }
}

/// `1000-2000` as `[1000, 2000)`, `5000-` as `[5000, ∞)`.
fn price_range(value: &str) -> Option<(u64, Option<u64>)> {
    let (from, to) = value.split_once('-')?;
    let from = from.parse().ok()?;
    let to = if to.is_empty() {
        None
    } else {
        Some(to.parse().ok()?)
    };
    Some((from, to))
}

fn bucket_key((from, to): (u64, Option<u64>)) -> String {
    match to {
        Some(to) => format!("{from}-{to}"),
        None => format!("{from}-"),
    }
}

/// Words as the index's `words` field has them: split on what is not a letter or digit,
/// lowercase, accents folded.
pub fn words(text: &str) -> Vec<String> {
    let mut analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    stream.process(&mut |token| out.push(token.text.clone()));
    out
}

/// A word's stemmed form, `None` for a stop word.
fn stem(index: &SearchIndex, word: &str) -> Option<String> {
    let mut analyzer = index.index().tokenizers().get(super::STEMMED)?;
    let mut stream = analyzer.token_stream(word);
    let mut out = None;
    stream.process(&mut |token| {
        if out.is_none() {
            out = Some(token.text.clone());
        }
    });
    out
}

/// A part of the query: a word, or a synonym group's phrases (any one may match).
enum Unit {
    Word(String),
    Phrases(Vec<Vec<String>>),
}

fn units(words: &[String], groups: &synonyms::Groups) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut at = 0;
    while at < words.len() {
        // The longest phrase of any group that starts here.
        let found = groups
            .iter()
            .flat_map(|group| group.iter().map(move |phrase| (group, phrase)))
            .filter(|(_, phrase)| words[at..].starts_with(phrase))
            .max_by_key(|(_, phrase)| phrase.len());
        match found {
            Some((group, phrase)) => {
                units.push(Unit::Phrases(group.clone()));
                at += phrase.len();
            }
            None => {
                units.push(Unit::Word(words[at].clone()));
                at += 1;
            }
        }
    }
    units
}

/// How many typos a word may have: none under 5 letters or with a digit, one from 5,
/// two from 9.
pub fn typos_allowed(word: &str) -> u8 {
    let letters = word.chars().count();
    if word.chars().any(|c| c.is_ascii_digit()) || letters < 5 {
        0
    } else if letters < 9 {
        1
    } else {
        2
    }
}

/// What one word matches. `prefix`: the word may be the start of one (what is typed).
fn word_query(index: &SearchIndex, word: &str, prefix: bool) -> Box<dyn Query> {
    let f = &index.fields;
    let mut should: Vec<Box<dyn Query>> = Vec::new();
    if let Some(stemmed) = stem(index, word) {
        for (field, boost) in scored_fields(f) {
            should.push(Box::new(BoostQuery::new(
                Box::new(TermQuery::new(
                    Term::from_field_text(field, &stemmed),
                    IndexRecordOption::WithFreqs,
                )),
                boost,
            )));
        }
    }
    let term = Term::from_field_text(f.words, word);
    should.push(Box::new(TermQuery::new(
        term.clone(),
        IndexRecordOption::Basic,
    )));
    // Near matches score a constant: on the name they count more than elsewhere.
    let in_name = Term::from_field_text(f.name, word);
    let typos = typos_allowed(word);
    if typos > 0 {
        should.push(Box::new(BoostQuery::new(
            Box::new(FuzzyTermQuery::new(in_name.clone(), typos, true)),
            1.5,
        )));
        should.push(Box::new(BoostQuery::new(
            Box::new(FuzzyTermQuery::new(term.clone(), typos, true)),
            0.5,
        )));
    }
    if prefix {
        should.push(Box::new(BoostQuery::new(
            Box::new(FuzzyTermQuery::new_prefix(in_name, 0, true)),
            1.4,
        )));
        should.push(Box::new(BoostQuery::new(
            Box::new(FuzzyTermQuery::new_prefix(term.clone(), 0, true)),
            0.7,
        )));
        if typos > 0 {
            should.push(Box::new(BoostQuery::new(
                Box::new(FuzzyTermQuery::new_prefix(term, 1, true)),
                0.3,
            )));
        }
    }
    Box::new(BooleanQuery::union(should))
}

/// The text part of a search: every unit must match. `None`: no words (browse).
/// The last word is also a prefix from `min_prefix` letters (0: never).
fn text_query(
    index: &SearchIndex,
    q: &str,
    groups: &synonyms::Groups,
    min_prefix: usize,
) -> Option<Box<dyn Query>> {
    let mut all = words(q);
    all.truncate(MAX_WORDS);
    // Stop words count only when the query has nothing else.
    let content: Vec<String> = all
        .iter()
        .filter(|w| stem(index, w).is_some())
        .cloned()
        .collect();
    let words = if content.is_empty() { all } else { content };
    let units = units(&words, groups);
    let last = units.len().checked_sub(1)?;
    let mut must: Vec<Box<dyn Query>> = Vec::new();
    for (i, unit) in units.into_iter().enumerate() {
        match unit {
            // A one-letter prefix matches half the catalog: a search reads the last
            // word as a prefix from three letters, autocomplete from one.
            Unit::Word(word) => {
                let as_prefix = min_prefix > 0 && i == last && word.chars().count() >= min_prefix;
                must.push(word_query(index, &word, as_prefix));
            }
            Unit::Phrases(phrases) => {
                let alternatives = phrases
                    .iter()
                    .map(|phrase| -> Box<dyn Query> {
                        Box::new(BooleanQuery::intersection(
                            phrase.iter().map(|w| word_query(index, w, false)).collect(),
                        ))
                    })
                    .collect();
                must.push(Box::new(BooleanQuery::union(alternatives)));
            }
        }
    }
    Some(Box::new(BooleanQuery::intersection(must)))
}

/// The filters, without `except`'s (its own counts are taken without it).
fn filter_queries(
    index: &SearchIndex,
    request: &SearchRequest,
    except: Option<&str>,
) -> Vec<Box<dyn Query>> {
    let f = &index.fields;
    let mut filters: Vec<Box<dyn Query>> = Vec::new();
    for (facet, values) in &request.filters {
        if Some(*facet) == except || values.is_empty() {
            continue;
        }
        if *facet == "price" {
            // Ranges: the facet's buckets, or any other a client sends.
            let any = values
                .iter()
                .filter_map(|value| price_range(value))
                .map(|(from, to)| -> Box<dyn Query> {
                    let upper = to.map_or(Bound::Unbounded, |to| {
                        Bound::Excluded(Term::from_field_u64(f.price, to))
                    });
                    Box::new(RangeQuery::new(
                        Bound::Included(Term::from_field_u64(f.price, from)),
                        upper,
                    ))
                })
                .collect();
            filters.push(Box::new(BooleanQuery::union(any)));
            continue;
        }
        let any: Vec<Box<dyn Query>> = values
            .iter()
            .map(|value| -> Box<dyn Query> {
                Box::new(TermQuery::new(
                    Term::from_facet(f.facets, &Facet::from_path([*facet, value.as_str()])),
                    IndexRecordOption::Basic,
                ))
            })
            .collect();
        filters.push(Box::new(BooleanQuery::union(any)));
    }
    if except != Some("price") && (request.price_min.is_some() || request.price_max.is_some()) {
        let lower = request.price_min.map_or(Bound::Unbounded, |min| {
            Bound::Included(Term::from_field_u64(f.price, min))
        });
        let upper = request.price_max.map_or(Bound::Unbounded, |max| {
            Bound::Included(Term::from_field_u64(f.price, max))
        });
        filters.push(Box::new(RangeQuery::new(lower, upper)));
    }
    filters
}

fn combine(text: Option<Box<dyn Query>>, filters: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    clauses.push((Occur::Must, text.unwrap_or_else(|| Box::new(AllQuery))));
    for filter in filters {
        // Filters decide what matches, not how well.
        clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(filter, 0.0))));
    }
    Box::new(BooleanQuery::new(clauses))
}

/// One option of a facet.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FacetValue {
    /// What to send back as the facet's parameter.
    pub value: String,
    /// Products matching with this option (and the other facets' filters).
    pub count: u64,
    pub selected: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FacetGroup {
    /// The parameter: `category`, `benefit`, ...
    pub name: String,
    pub values: Vec<FacetValue>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchResults {
    pub q: String,
    /// Matching products.
    pub total: usize,
    pub page: usize,
    pub per_page: usize,
    pub sort: Sort,
    pub products: Vec<SearchHit>,
    /// Every facet with its options and counts (options of no match left out, unless
    /// selected).
    pub facets: Vec<FacetGroup>,
    /// When nothing matched: the query with its words corrected to the nearest ones the
    /// catalog has, if that differs.
    pub did_you_mean: Option<String>,
}

/// Runs a search. Blocking (tantivy is synchronous): a few milliseconds.
pub fn search(
    index: &SearchIndex,
    request: &SearchRequest,
    synonyms: &synonyms::Groups,
) -> Result<SearchResults> {
    let searcher = index.reader().searcher();
    let text = text_query(index, &request.q, synonyms, 3);
    let query = combine(
        text.as_ref().map(|q| q.box_clone()),
        filter_queries(index, request, None),
    );
    let offset = (request.page - 1) * request.per_page;
    let top = TopDocs::with_limit(request.per_page).and_offset(offset);
    let mut facets = FacetCollector::for_field("facets");
    for facet in FACETS {
        facets.add_facet(format!("/{facet}").as_str());
    }
    // Sorted by score, or by one of the u64 fast fields.
    let by_field = match request.sort {
        Sort::Relevance => None,
        Sort::PriceAsc => Some(("price", Order::Asc)),
        Sort::PriceDesc => Some(("price", Order::Desc)),
        Sort::Newest => Some(("created", Order::Desc)),
        Sort::BestSelling => Some(("sold", Order::Desc)),
    };
    let (addresses, total, counts) = match by_field {
        None => collect(&searcher, &*query, top.order_by_score(), facets)?,
        Some((field, order)) => collect(
            &searcher,
            &*query,
            top.order_by_fast_field::<u64>(field, order),
            facets,
        )?,
    };
    let products = addresses
        .into_iter()
        .map(|address| hit_at(index, &searcher, address))
        .collect::<Result<Vec<_>>>()?;
    let mut groups = Vec::with_capacity(FACETS.len());
    for facet in FACETS {
        let selected = request.filters.get(facet);
        let narrowed = selected.is_some_and(|s| !s.is_empty())
            || (facet == "price" && (request.price_min.is_some() || request.price_max.is_some()));
        // A facet with a selection is counted without its own filter.
        let own;
        let counts = if narrowed {
            let query = combine(
                text.as_ref().map(|q| q.box_clone()),
                filter_queries(index, request, Some(facet)),
            );
            let mut collector = FacetCollector::for_field("facets");
            collector.add_facet(format!("/{facet}").as_str());
            own = searcher
                .search(&*query, &collector)
                .map_err(anyhow::Error::from)?;
            &own
        } else {
            &counts
        };
        groups.push(facet_group(facet, counts, selected));
    }
    let did_you_mean = if total == 0 && !request.q.is_empty() {
        correction(index, &searcher, &request.q)?
    } else {
        None
    };
    Ok(SearchResults {
        q: request.q.clone(),
        total,
        page: request.page,
        per_page: request.per_page,
        sort: request.sort,
        products,
        facets: groups,
        did_you_mean,
    })
}

/// The hit stored in a document.
fn hit_at(index: &SearchIndex, searcher: &Searcher, address: DocAddress) -> Result<SearchHit> {
    let doc: TantivyDocument = searcher.doc(address).map_err(anyhow::Error::from)?;
    let summary = doc
        .get_first(index.fields.summary)
        .and_then(|v| v.as_str())
        .unwrap_or("{}");
    Ok(serde_json::from_str(summary).map_err(anyhow::Error::from)?)
}

fn collect<C, K>(
    searcher: &Searcher,
    query: &dyn Query,
    top: C,
    facets: FacetCollector,
) -> Result<(Vec<DocAddress>, usize, FacetCounts)>
where
    C: Collector<Fruit = Vec<(K, DocAddress)>>,
{
    let (hits, total, counts) = searcher
        .search(query, &(top, Count, facets))
        .map_err(anyhow::Error::from)?;
    Ok((hits.into_iter().map(|(_, a)| a).collect(), total, counts))
}

fn facet_group(
    facet: &str,
    counts: &FacetCounts,
    selected: Option<&BTreeSet<String>>,
) -> FacetGroup {
    let mut values: Vec<FacetValue> = counts
        .get(format!("/{facet}").as_str())
        .filter_map(|(path, count)| {
            let value = path.to_path().last()?.to_string();
            Some(FacetValue {
                selected: selected.is_some_and(|s| s.contains(&value)),
                value,
                count,
            })
        })
        .collect();
    for value in selected.into_iter().flatten() {
        if !values.iter().any(|v| &v.value == value) {
            values.push(FacetValue {
                value: value.clone(),
                count: 0,
                selected: true,
            });
        }
    }
    if facet == "price" {
        let order = |v: &FacetValue| {
            PRICE_BUCKETS
                .iter()
                .position(|b| bucket_key(*b) == v.value)
                .unwrap_or(usize::MAX)
        };
        values.sort_by_key(order);
    } else {
        values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    }
    FacetGroup {
        name: facet.to_owned(),
        values,
    }
}

/// The query with each word the catalog does not have replaced by its nearest word
/// (edit distance one for words under five letters, two from five), the commonest
/// first; `None` if nothing changed.
fn correction(index: &SearchIndex, searcher: &Searcher, q: &str) -> Result<Option<String>> {
    let field = index.fields.words;
    let mut corrected = Vec::new();
    let mut changed = false;
    for word in words(q).into_iter().take(MAX_WORDS) {
        let known = searcher
            .doc_freq(&Term::from_field_text(field, &word))
            .map_err(anyhow::Error::from)?
            > 0;
        if known || word.chars().count() < 3 || word.chars().any(|c| c.is_ascii_digit()) {
            corrected.push(word);
            continue;
        }
        let limit = if word.chars().count() < 5 { 1 } else { 2 };
        let mut best: Option<(usize, u64, String)> = None;
        let mut frequencies: HashMap<String, u64> = HashMap::new();
        for segment in searcher.segment_readers() {
            let inverted = segment.inverted_index(field).map_err(anyhow::Error::from)?;
            let mut stream = inverted.terms().stream().map_err(anyhow::Error::from)?;
            while let Some((key, info)) = stream.next() {
                let Ok(candidate) = std::str::from_utf8(key) else {
                    continue;
                };
                if candidate.len().abs_diff(word.len()) > limit {
                    continue;
                }
                *frequencies.entry(candidate.to_owned()).or_default() += u64::from(info.doc_freq);
            }
        }
        for (candidate, frequency) in frequencies {
            let distance = edit_distance(&word, &candidate);
            if distance == 0 || distance > limit {
                continue;
            }
            let better = best.as_ref().is_none_or(|(d, f, c)| {
                (distance, std::cmp::Reverse(frequency), &candidate)
                    < (*d, std::cmp::Reverse(*f), c)
            });
            if better {
                best = Some((distance, frequency, candidate));
            }
        }
        match best {
            Some((_, _, candidate)) => {
                corrected.push(candidate);
                changed = true;
            }
            None => corrected.push(word),
        }
    }
    Ok(changed.then(|| corrected.join(" ")))
}

/// Levenshtein distance with adjacent transpositions counted as one (what a typo is).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// Autocomplete: the best few products for what was typed (the last word a prefix).
pub fn suggest_products(
    index: &SearchIndex,
    q: &str,
    synonyms: &synonyms::Groups,
    limit: usize,
) -> Result<Vec<SearchHit>> {
    let Some(text) = text_query(index, q, synonyms, 1) else {
        return Ok(Vec::new());
    };
    let searcher = index.reader().searcher();
    let hits = searcher
        .search(&*text, &TopDocs::with_limit(limit).order_by_score())
        .map_err(anyhow::Error::from)?;
    hits.into_iter()
        .map(|(_, address)| hit_at(index, &searcher, address))
        .collect()
}

/// The indexed products of these slugs, in their order (unknown, inactive ones left out).
pub fn hits_for_slugs(index: &SearchIndex, slugs: &[String]) -> Result<Vec<SearchHit>> {
    let searcher = index.reader().searcher();
    let mut hits = Vec::with_capacity(slugs.len());
    for slug in slugs {
        let query = TermQuery::new(
            Term::from_field_text(index.fields.slug, slug),
            IndexRecordOption::Basic,
        );
        let found = searcher
            .search(&query, &TopDocs::with_limit(1).order_by_score())
            .map_err(anyhow::Error::from)?;
        if let Some((_, address)) = found.first() {
            hits.push(hit_at(index, &searcher, *address)?);
        }
    }
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_grow_with_the_word() {
        assert_eq!(typos_allowed("zinc"), 0);
        assert_eq!(typos_allowed("serum"), 1);
        assert_eq!(typos_allowed("vitamin"), 1);
        assert_eq!(typos_allowed("magnesium"), 2);
        assert_eq!(typos_allowed("1000mg"), 0);
        assert_eq!(edit_distance("magnesium", "magnesuim"), 1);
        assert_eq!(edit_distance("zinx", "zinc"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn parameters_are_checked_and_named() {
        let request = SearchRequest::from_query(Some(
            "q=vit+c&category=serums&category=toners&vegan=on&price=1000-2000&sort=price_asc&page=2&per_page=10&size=",
        ))
        .unwrap();
        assert_eq!(request.q, "vit c");
        assert_eq!(request.filters["category"].len(), 2);
        assert!(request.filters["vegan"].contains("true"));
        assert_eq!(
            (request.page, request.per_page, request.sort),
            (2, 10, Sort::PriceAsc)
        );
        let field_of = |query: &str| match SearchRequest::from_query(Some(query)) {
            Err(Error::BadRequest { fields, .. }) => fields[0].field.clone(),
            other => panic!("{query}: {other:?}"),
        };
        assert_eq!(field_of("colour=red"), "colour");
        assert_eq!(field_of("price=cheap"), "price");
        assert_eq!(field_of("vegan=maybe"), "vegan");
        assert_eq!(field_of("price_min=500&price_max=100"), "price_max");
        assert_eq!(field_of("price_min=-1"), "price_min");
        assert_eq!(field_of("sort=cheapest"), "sort");
        assert_eq!(field_of("page=0"), "page");
        assert_eq!(field_of("per_page=500"), "per_page");
        assert_eq!(field_of(&format!("q={}", "a".repeat(201))), "q");
        assert_eq!(field_of("page=201"), "page");
        assert!(SearchRequest::from_query(Some("vegan=false&price=0-")).is_ok());
    }

    #[test]
    fn query_syntax_is_only_words() {
        assert_eq!(
            words(r#""vitamin (c) AND zinc* -x""#),
            ["vitamin", "c", "and", "zinc", "x"]
        );
        assert_eq!(words("Crème  Hydratante"), ["creme", "hydratante"]);
    }

    #[test]
    fn synonym_phrases_become_one_unit() {
        let groups = synonyms::parse("vit c = vitamin c").unwrap();
        let found = units(&words("vit c serum"), &groups);
        assert!(matches!(&found[0], Unit::Phrases(p) if p.len() == 2));
        assert!(matches!(&found[1], Unit::Word(w) if w == "serum"));
    }
}
