//! `ochopod::glob::matches`, the one glob of `depends_on` and `ochopod ctl`'s cluster arguments,
//! against a reference matcher written the plain way (dynamic programming over both strings), on
//! small alphabets where wildcards and literals collide often; and, whatever the text, a pattern
//! made from it by turning characters into `?` and inserting `*` matches it.

use proptest::prelude::*;

use ochopod::glob::matches;

/// The reference: `m[i][j]`, whether the first `i` pattern characters match the first `j` text
/// characters.
fn reference(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let mut m = vec![vec![false; t.len() + 1]; p.len() + 1];
    m[0][0] = true;
    for i in 1..=p.len() {
        for j in 0..=t.len() {
            m[i][j] = match p[i - 1] {
                '*' => m[i - 1][j] || (j > 0 && m[i][j - 1]),
                '?' => j > 0 && m[i - 1][j - 1],
                c => j > 0 && t[j - 1] == c && m[i - 1][j - 1],
            };
        }
    }
    m[p.len()][t.len()]
}

/// A pattern that matches `text`: each character kept, or turned into `?`, with stars anywhere.
fn pattern_for(text: &str, edits: &[(bool, bool)]) -> String {
    let mut out = String::new();
    for (c, (question, star)) in text
        .chars()
        .zip(edits.iter().copied().chain(std::iter::repeat((false, false))))
    {
        if star {
            out.push('*');
        }
        out.push(if question { '?' } else { c });
    }
    out
}

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn agrees_with_the_reference(pattern in "[ab.*?]{0,12}", text in "[ab.é]{0,16}") {
        prop_assert_eq!(matches(&pattern, &text), reference(&pattern, &text));
    }

    #[test]
    fn a_pattern_made_from_the_text_matches_it(
        text in "[a-z0-9.-]{0,24}",
        edits in prop::collection::vec((any::<bool>(), any::<bool>()), 0..24),
    ) {
        let pattern = pattern_for(&text, &edits);
        prop_assert!(matches(&pattern, &text), "{} ~ {}", pattern, text);
    }

    #[test]
    fn long_runs_of_stars_stay_fast(stars in 1usize..64, text in "a{0,200}") {
        // A naive recursive glob takes exponential time on `*a*a*a...b` against `aaaa...`.
        let pattern = "*a".repeat(stars) + "b";
        prop_assert!(!matches(&pattern, &text));
    }
}
