//! The merchant's search synonyms (`search_synonyms`): groups separated by `;`, the
//! phrases of a group by `=`. A query holding one phrase of a group finds the others.

/// The most groups a store may set.
const MAX_GROUPS: usize = 200;
/// The most words of one phrase.
const MAX_WORDS: usize = 5;

/// Groups of phrases, each phrase its words (lowercase, folded like the query's).
pub type Groups = Vec<Vec<Vec<String>>>;

/// Reads the setting, answering a message for the field when it is not right.
pub fn parse(text: &str) -> Result<Groups, String> {
    let mut groups = Vec::new();
    for (index, group) in text.split([';', '\n']).enumerate() {
        if group.trim().is_empty() {
            continue;
        }
        let phrases: Vec<Vec<String>> = group.split('=').map(super::query::words).collect();
        if phrases.len() < 2 || phrases.iter().any(Vec::is_empty) {
            return Err(format!(
                "group {} (`{}`) must be two or more phrases separated by `=`",
                index + 1,
                group.trim()
            ));
        }
        if phrases.iter().any(|p| p.len() > MAX_WORDS) {
            return Err(format!(
                "group {}: a phrase has at most {MAX_WORDS} words",
                index + 1
            ));
        }
        groups.push(phrases);
    }
    if groups.len() > MAX_GROUPS {
        return Err(format!("at most {MAX_GROUPS} groups"));
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_read_as_merchants_write_them() {
        let groups = parse("vit c = Vitamin C; moisturiser=moisturizer\n\n").unwrap();
        assert_eq!(
            groups,
            vec![
                vec![vec!["vit", "c"], vec!["vitamin", "c"]],
                vec![vec!["moisturiser"], vec!["moisturizer"]],
            ]
        );
        assert_eq!(parse("").unwrap(), Groups::new());
        for bad in ["lonely", "a = ", "= b", "a = b; c"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
