//! The one glob of ochopod: `*` stands for any run of characters (none included, dots too), `?`
//! for exactly one character, everything else for itself. No classes, no escapes: the names it
//! matches (cluster keys, `[a-z0-9-]` and one dot) need none.
//!
//! Used for `depends_on` patterns (pod.yaml: validated to `[a-z0-9-*]`, so a `?` never reaches
//! it from there; the leader's resolution and `check`'s "depends on itself") and for the cluster
//! arguments of `ochopod ctl` (`*` and `?`). Pure; time O(pattern × text) at worst, never
//! exponential: a pattern from the command line or a pod.yaml cannot make it spin.

/// Whether `text` matches `pattern` as a whole.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // The last star seen, and where in the text its run currently ends: on a mismatch the star
    // takes one more character and matching resumes after it. Earlier stars never need to take
    // more (the classic argument: whatever the later star takes covers it).
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_match_runs_of_characters_dots_included() {
        assert!(matches("default.*", "default.zookeeper"));
        assert!(matches("*.zoo*", "prod.zookeeper"));
        assert!(matches("*.zk", "prod.zk"));
        assert!(matches("kafka-*", "kafka-a"));
        assert!(matches("a*b*c", "axxbyybzc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(matches("*", ""));
        assert!(matches("**", "x"));
        assert!(!matches("default.*", "prod.kafka"));
    }

    #[test]
    fn a_question_mark_is_one_character() {
        assert!(matches("default.k?fka", "default.kafka"));
        assert!(!matches("default.k?fka", "default.kfka"));
        assert!(!matches("?", ""));
        assert!(matches("?", "é"));
    }

    #[test]
    fn without_wildcards_only_the_same_text_matches() {
        assert!(matches("zk", "zk"));
        assert!(!matches("zk", "zk2"));
        assert!(!matches("default.zk", "default.zk2"));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
    }
}
