//! GPT-2's pre-tokenizer, by hand.
//!
//! GPT-2 splits text with the regex
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! before byte-level BPE. The look-ahead needs a backtracking engine, which is
//! where most of a regex-based tokenizer's time goes. This is the same language
//! as a single left-to-right scan: at each position the alternatives are tried in
//! the regex's order, each one a greedy run over one character class. The oracle
//! test checks the result against tiktoken's regex on a torture set.

use unicode_general_category::{get_general_category, GeneralCategory as G};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Letter,
    Number,
    Space,
    Other,
}

static ASCII: [Class; 128] = {
    let mut t = [Class::Other; 128];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        t[i] = if c.is_ascii_alphabetic() {
            Class::Letter
        } else if c.is_ascii_digit() {
            Class::Number
        } else if matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            Class::Space
        } else {
            Class::Other
        };
        i += 1;
    }
    t
};

#[inline]
fn class(c: char) -> Class {
    if (c as u32) < 128 {
        return ASCII[c as usize];
    }
    if c.is_whitespace() {
        return Class::Space;
    }
    match get_general_category(c) {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => Class::Letter,
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => Class::Number,
        _ => Class::Other,
    }
}

/// Decodes the char at byte `i` of `s` (which must be a char boundary).
#[inline]
fn char_at(s: &str, i: usize) -> Option<(char, usize)> {
    let b = *s.as_bytes().get(i)?;
    if b < 128 {
        return Some((b as char, 1));
    }
    let c = s[i..].chars().next()?;
    Some((c, c.len_utf8()))
}

/// End of the run of `cls` characters starting at byte `i`.
#[inline]
fn run_end(s: &str, mut i: usize, cls: Class) -> usize {
    let bytes = s.as_bytes();
    while i < bytes.len() {
        let b = bytes[i];
        if b < 128 {
            if ASCII[b as usize] != cls {
                break;
            }
            i += 1;
        } else {
            let (c, n) = char_at(s, i).unwrap();
            if class(c) != cls {
                break;
            }
            i += n;
        }
    }
    i
}

/// Length of a contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`) at byte `i`.
#[inline]
fn contraction(b: &[u8], i: usize) -> usize {
    if b.get(i) != Some(&b'\'') {
        return 0;
    }
    match (b.get(i + 1), b.get(i + 2)) {
        (Some(b's' | b't' | b'm' | b'd'), _) => 2,
        (Some(b'r'), Some(b'e')) | (Some(b'v'), Some(b'e')) | (Some(b'l'), Some(b'l')) => 3,
        _ => 0,
    }
}

/// Calls `f` with each pre-token of `s`, in order; together they cover `s`.
pub fn split<'a>(s: &'a str, mut f: impl FnMut(&'a str)) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let n = contraction(b, i);
        if n > 0 {
            i += n;
            f(&s[start..i]);
            continue;
        }
        let (c, clen) = char_at(s, i).unwrap();
        let cls = class(c);
        let end = match cls {
            Class::Space => {
                // ` ?X+`: a single ASCII space takes the run of letters, digits or
                // other symbols that follows it.
                let next = if c == ' ' {
                    char_at(s, i + 1).map(|(c2, _)| class(c2))
                } else {
                    None
                };
                match next {
                    Some(k @ (Class::Letter | Class::Number | Class::Other)) => {
                        run_end(s, i + 1, k)
                    }
                    _ => {
                        // `\s+(?!\S)` then `\s+`: a whitespace run leaves its last
                        // character to the next token when a non-space follows.
                        let run = run_end(s, i, Class::Space);
                        if run == b.len() {
                            run
                        } else {
                            let last = s[..run].chars().next_back().unwrap().len_utf8();
                            if run - last > i {
                                run - last
                            } else {
                                run
                            }
                        }
                    }
                }
            }
            k => run_end(s, i + clen, k),
        };
        i = end;
        f(&s[start..end]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(s: &str) -> Vec<&str> {
        let mut v = Vec::new();
        split(s, |p| v.push(p));
        v
    }

    #[test]
    fn splits_like_the_gpt2_regex() {
        assert_eq!(pieces("Hello world"), ["Hello", " world"]);
        assert_eq!(
            pieces("it's   here\n\nnow"),
            ["it", "'s", "  ", " here", "\n", "\n", "now"]
        );
        assert_eq!(pieces("a  \n b"), ["a", "  \n", " b"]);
        assert_eq!(pieces("x 123 !!'s"), ["x", " 123", " !!'", "s"]);
        assert_eq!(pieces("end   "), ["end", "   "]);
        assert_eq!(pieces("We'LL we'll"), ["We", "'", "LL", " we", "'ll"]);
        assert_eq!(pieces("日本語 テスト"), ["日本語", " テスト"]);
        assert_eq!(pieces("\u{3000}x"), ["\u{3000}", "x"]);
    }
}
