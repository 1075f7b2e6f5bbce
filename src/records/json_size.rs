//! What a JSON line costs once parsed, and a bound on it checked before parsing.
//!
//! A line is bounded by its bytes (`MAX_ROW_BYTES`), but its parsed form is not: every key and
//! value becomes a `serde_json::Value` of 72 bytes, an array's first element allocates room for
//! four, an object's first key a table and an entry vector. `[0,0,0,...]` grows 70 times over
//! its text, `[[[0]]],...` 110 times, so a 32 MiB line could need several GiB. A line is therefore
//! also bounded by how many keys and values it holds, counted in its text before `serde_json`
//! builds anything, and a chunk of rows is sized by what its rows hold once parsed.
//!
//! The count is of the structural characters `[`, `{`, `,` and `:` outside strings. In a valid
//! JSON text that is exactly the keys and values inside its containers (an object's entry is a
//! `:` and a `{` or `,`, an array's element a `[` or `,`), plus one for each empty container.

use serde_json::{Map, Value};

/// The most keys and values one JSON line may hold: an object of 50,000 fields, an array of
/// 100,000 numbers. A company's record has a few dozen; past this the line is not parsed.
/// With `PARSED_BYTES_PER_ITEM`, a line that passes holds at most 32 MB beyond its text, less
/// than the longest line's bytes (`MAX_ROW_BYTES`).
pub const MAX_JSON_ITEMS: usize = 100_000;

/// The most memory one key or value takes once parsed, with its share of the vector or table
/// holding it and the allocator's overhead, measured with `serde_json` 1.0.154 (`preserve_order`)
/// and glibc's chunk sizes on 64-bit: 142 bytes in `[0,0,...]`, 170 in `[{"a":0},...]`, 216 in
/// an array just past doubling its capacity, 302 in nested single-element arrays (the worst).
/// The text of strings is not included: it is at most the line's bytes.
pub const PARSED_BYTES_PER_ITEM: usize = 320;

/// Counts the keys and values in a JSON text without parsing it (see the module), giving up
/// once the count passes `stop_after`: the result is then only known to be above it.
///
/// Outside strings every byte is looked at (a long run there is itself structure: numbers,
/// separators); inside a string only `"` and `\` matter, so it is skipped with `memchr2`.
/// An escape skips the byte after the backslash, so `\"` and `\\` are read as `serde_json`
/// reads them. Only ASCII bytes are compared, and UTF-8 never uses them inside a multi-byte
/// character. On a text that is not valid JSON the count is still an upper bound on what
/// `serde_json` builds before it stops at the first error: up to there, the text is valid and
/// both read it the same way.
pub fn count_items(text: &[u8], stop_after: usize) -> usize {
    let mut count = 0;
    let mut at = 0;
    while let Some(&byte) = text.get(at) {
        at += 1;
        match byte {
            b'[' | b'{' | b',' | b':' => {
                count += 1;
                if count > stop_after {
                    return count;
                }
            }
            b'"' => loop {
                let Some(found) = text.get(at..).and_then(|rest| memchr::memchr2(b'"', b'\\', rest)) else {
                    // An unclosed string: the rest of the line is in it.
                    return count;
                };
                let quote = text[at + found] == b'"';
                at += found + if quote { 1 } else { 2 };
                if quote {
                    break;
                }
            },
            _ => {}
        }
    }
    count
}

/// The keys and values held by a parsed object, as [`count_items`] counts them in its text
/// (fewer when the text repeats a key: the map keeps the last one).
pub fn parsed_items(object: &Map<String, Value>) -> usize {
    object_items(object)
}

fn object_items(object: &Map<String, Value>) -> usize {
    if object.is_empty() {
        return 1;
    }
    2 * object.len() + object.values().map(value_items).sum::<usize>()
}

/// Recursion is as deep as the text's nesting, which `serde_json` caps at 128.
fn value_items(value: &Value) -> usize {
    match value {
        Value::Array(items) if items.is_empty() => 1,
        Value::Array(items) => items.len() + items.iter().map(value_items).sum::<usize>(),
        Value::Object(object) => object_items(object),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => 0,
    }
}

/// What a parsed JSON row holds in memory, for sizing chunks: its text as read, the text of
/// its strings (at most as long), and its keys and values.
pub fn parsed_cost(raw: &str, object: &Map<String, Value>) -> usize {
    2 * raw.len() + parsed_items(object) * PARSED_BYTES_PER_ITEM
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn count(text: &str) -> usize {
        count_items(text.as_bytes(), usize::MAX)
    }

    #[test]
    fn keys_and_values_are_counted_and_strings_are_skipped() {
        assert_eq!(count(r#"{"a":1}"#), 2);
        assert_eq!(count(r#"{"a":[1,2,3],"b":{}}"#), 2 + 3 + 2 + 1);
        assert_eq!(count(r#"{"a":[],"b":[[]]}"#), 2 + 1 + 2 + 2);
        assert_eq!(count(r#"{ "a" : [ 1 , 2 ] }"#), 4);
        assert_eq!(count(r#"{"a,b:c[d{e}]":"x,y:[z]{w}"}"#), 2);
        assert_eq!(count(""), 0);
        assert_eq!(count("3"), 0);
    }

    #[test]
    fn escaped_quotes_and_backslashes_do_not_end_a_string_early_or_late() {
        // `\"` stays inside; `\\` is a backslash, so the quote after it ends the string.
        assert_eq!(count(r#"{"a":"say \"[,:]\" ok","b":1}"#), 4);
        assert_eq!(count(r#"{"a\\":"\\","b":[1,2]}"#), 6);
        assert_eq!(count(r#"{"a":"\\\"[,]\\","b":1}"#), 4);
        // `\u0022` is a quote only once parsed: in the text it is not one.
        assert_eq!(count(r#"{"a":"\u0022,:","b":"\/,"}"#), 4);
        assert_eq!(count(r#"{"ünïcödé,":"日本,語:","b":"😀["}"#), 4);
        for text in [r#"{"a":"\\\"[,]\\","b":1}"#, r#"{"a\\":"\\","b":[1,2]}"#, r#"{"a":"\u0022,:","b":"\/,"}"#] {
            let object: Map<String, Value> = serde_json::from_str(text).unwrap();
            assert_eq!(parsed_items(&object), count(text), "{text}");
        }
    }

    #[test]
    fn texts_that_are_not_json_are_counted_without_panicking() {
        for text in ["\"", "\\", "\"\\", "{\"a\\", "{\"a\\\"", "[,,,", "\"abc", "{\"a\":\"b\\"] {
            assert!(count(text) <= text.len(), "{text:?}");
        }
        assert_eq!(count(r#"{"a":"unclosed, [ {"#), 2);
    }

    #[test]
    fn counting_stops_once_past_the_limit() {
        let text = format!("[{}]", ["0"; 1000].join(","));
        assert_eq!(count_items(text.as_bytes(), 10), 11);
        assert_eq!(count_items(text.as_bytes(), usize::MAX), 1000);
    }

    #[test]
    fn a_parsed_row_costs_its_text_twice_and_its_items() {
        let raw = r#"{"name":"Acme","address":{"city":"Paris"}}"#;
        let object: Map<String, Value> = serde_json::from_str(raw).unwrap();
        assert_eq!(parsed_items(&object), 6);
        assert_eq!(parsed_cost(raw, &object), 2 * raw.len() + 6 * PARSED_BYTES_PER_ITEM);
        // A duplicated key is counted in the text, not in the map that keeps one of them.
        assert_eq!(count(r#"{"a":1,"a":2}"#), 4);
        assert_eq!(parsed_items(&serde_json::from_str(r#"{"a":1,"a":2}"#).unwrap()), 2);
    }

    /// Strings full of what the count looks for: quotes, backslashes, structure, controls,
    /// and characters outside ASCII.
    fn tricky_string() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                4 => proptest::sample::select(vec!['"', '\\', '[', ']', '{', '}', ',', ':', '/', 'u', '0', ' ']),
                1 => proptest::sample::select(vec!['\n', '\t', '\u{1}', '\u{7f}', 'é', '日', '😀', '\u{2028}']),
                2 => proptest::char::range('a', 'z'),
            ],
            0..8,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            tricky_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((tricky_string(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The count read from the text is what `serde_json` builds from it, compact or
        /// pretty-printed, whatever the strings hold.
        #[test]
        fn the_count_matches_what_serde_json_parses(
            entries in proptest::collection::vec((tricky_string(), any_json()), 0..6),
            pretty in any::<bool>(),
        ) {
            let object: Map<String, Value> = entries.into_iter().collect();
            let text = if pretty {
                serde_json::to_string_pretty(&object).unwrap()
            } else {
                serde_json::to_string(&object).unwrap()
            };
            let parsed: Map<String, Value> = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(count(&text), parsed_items(&parsed), "{}", text);
            prop_assert_eq!(count_items(text.as_bytes(), 3), count(&text).min(4));
        }

        /// On any text at all the count neither panics nor exceeds the bytes, and whenever
        /// `serde_json` accepts the text, it is at least what was built.
        #[test]
        fn any_text_is_counted_safely(
            text in proptest::collection::vec(
                proptest::sample::select(b"{}[],:\"\\ a1u".to_vec()), 0..40),
        ) {
            prop_assert!(count_items(&text, usize::MAX) <= text.len());
            if let Ok(object) = serde_json::from_slice::<Map<String, Value>>(&text) {
                // More only when a key is repeated: counted in the text, kept once.
                prop_assert!(count_items(&text, usize::MAX) >= parsed_items(&object));
            }
        }
    }
}
