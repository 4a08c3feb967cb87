//! JSON without serde, for the wasm: the companion's calls and answers, `localStorage` records
//! and the options and events JavaScript passes. serde's derived readers and writers cost the
//! wasm a visitor per type and a float formatter for their error messages; these are read and
//! written field by field instead. Natively the companion keeps serde: each type's tests check
//! that the two agree on the wire (`reads_what_serde_writes`, `writes_what_serde_writes`).
//!
//! Numbers are `f64`, as JavaScript's: every size, count and time Ferry sends is a whole number
//! far below 2^53, and a reader asks for one ([`Json::as_u64`]).

use std::fmt::Write as _;

use crate::sorted::SortedMap;

/// A JSON value. An object keeps its fields in their order; a name given twice counts once,
/// the last time, as it does for the browser's `JSON.parse` and serde's maps.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Deeper nesting is refused: a hostile answer cannot exhaust the stack.
const MAX_DEPTH: usize = 128;

/// JavaScript's largest safe integer, 2^53 - 1: every whole number up to it is exact in an `f64`,
/// and no larger one is told apart from its neighbour.
const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

impl Json {
    /// Reads `text` as one JSON value (RFC 8259), with nothing but whitespace after it.
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut parser = Parser { text, at: 0 };
        let value = parser.value(0)?;
        parser.space();
        if parser.at < text.len() {
            return Err(parser.error("text after the value"));
        }
        Ok(value)
    }

    /// The value as JSON text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    /// The field `name` of an object; none for another value, or a field that is absent.
    pub fn get(&self, name: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields
                .iter()
                .rfind(|(field, _)| field == name)
                .map(|(_, value)| value),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(text) => Some(text),
            _ => None,
        }
    }

    /// A whole number from 0 to 2^53 - 1: what a size, count or time is.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Json::Number(number) if number.fract() == 0.0 && (0.0..=MAX_SAFE).contains(&number) => {
                Some(number as u64)
            }
            _ => None,
        }
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            Json::Number(number) => write_number(*number, out),
            Json::String(text) => write_string(text, out),
            Json::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(fields) => {
                out.push('{');
                for (index, (name, value)) in fields.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    write_string(name, out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// A whole number as its digits; a fraction to nine decimals, which is finer than any time
/// Ferry sends; what is not finite as `null`, as `JSON.stringify` writes it.
fn write_number(number: f64, out: &mut String) {
    if !number.is_finite() {
        out.push_str("null");
    } else if number.fract() == 0.0 {
        // Every f64 beyond 2^53 is whole too; none beyond i64's range is data Ferry has.
        let _ = write!(out, "{}", number as i64);
    } else {
        // Under 2^53 here: the whole part fits a u64, the fraction is rounded to nanos.
        let mut whole = number.abs().trunc() as u64;
        let mut fraction = ((number.abs().fract()) * 1e9).round() as u64;
        if fraction == 1_000_000_000 {
            (whole, fraction) = (whole + 1, 0);
        }
        let sign = if number < 0.0 { "-" } else { "" };
        let _ = write!(out, "{sign}{whole}");
        if fraction > 0 {
            let digits = format!("{fraction:09}");
            out.push('.');
            out.push_str(digits.trim_end_matches('0'));
        }
    }
}

fn write_string(text: &str, out: &mut String) {
    out.push('"');
    for char in text.chars() {
        match char {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0}'..='\u{1f}' => {
                let _ = write!(out, "\\u{:04x}", char as u32);
            }
            _ => out.push(char),
        }
    }
    out.push('"');
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.at)
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deep"));
        }
        self.space();
        match self.peek() {
            Some(b'{') => {
                self.at += 1;
                let mut fields = Vec::new();
                self.space();
                if !self.eat(b'}') {
                    loop {
                        self.space();
                        let name = self.string()?;
                        self.space();
                        if !self.eat(b':') {
                            return Err(self.error("expected ':'"));
                        }
                        let value = self.value(depth + 1)?;
                        fields.push((name, value));
                        self.space();
                        if self.eat(b'}') {
                            break;
                        }
                        if !self.eat(b',') {
                            return Err(self.error("expected ',' or '}'"));
                        }
                    }
                }
                Ok(Json::Object(fields))
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.space();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value(depth + 1)?);
                        self.space();
                        if self.eat(b']') {
                            break;
                        }
                        if !self.eat(b',') {
                            return Err(self.error("expected ',' or ']'"));
                        }
                    }
                }
                Ok(Json::Array(items))
            }
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'n') => self.word("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error("expected a value")),
        }
    }

    // The text is sliced with `get`: indexing a `str` would bring core's panic message for a cut
    // inside a character, with its Unicode tables (3 KB of wasm). Every cut here is at an ASCII
    // byte, so `get` never misses.
    fn rest(&self) -> &'a str {
        self.text.get(self.at..).unwrap_or_default()
    }

    /// The text from `start` to here: a run of a string between escapes.
    fn run(&self, start: usize) -> &'a str {
        self.text.get(start..self.at).unwrap_or_default()
    }

    fn word(&mut self, word: &str, value: Json) -> Result<Json, String> {
        if self.rest().starts_with(word) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }

    /// The number's value from its digits: exact for whole numbers up to 2^53, within a few
    /// units in the last place otherwise (no number Ferry reads has a fraction that matters).
    fn number(&mut self) -> Result<Json, String> {
        let negative = self.eat(b'-');
        let whole_start = self.at;
        let whole = self.digits();
        if whole == 0 || (whole > 1 && self.text.as_bytes()[whole_start] == b'0') {
            return Err(self.error("malformed number"));
        }
        let fraction_start = self.at + 1;
        let fraction = if self.eat(b'.') {
            let count = self.digits();
            if count == 0 {
                return Err(self.error("malformed number"));
            }
            count
        } else {
            0
        };
        let mut exponent: i64 = 0;
        if self.eat(b'e') || self.eat(b'E') {
            let negative_exponent = !self.eat(b'+') && self.eat(b'-');
            let exponent_start = self.at;
            if self.digits() == 0 {
                return Err(self.error("malformed number"));
            }
            // Capped far beyond any text's digits, so the digits a mantissa drops still count.
            for digit in &self.text.as_bytes()[exponent_start..self.at] {
                exponent = (exponent * 10 + i64::from(*digit - b'0')).min(1 << 50);
            }
            if negative_exponent {
                exponent = -exponent;
            }
        }
        // Up to 19 significant digits as an integer, then the rest as a power of ten.
        let mut mantissa: u64 = 0;
        let bytes = self.text.as_bytes();
        let digits = bytes[whole_start..whole_start + whole]
            .iter()
            .chain(bytes[fraction_start.min(self.at)..].iter().take(fraction));
        let mut scale = -(fraction as i64);
        for digit in digits {
            if mantissa < 1_000_000_000_000_000_000 {
                mantissa = mantissa * 10 + u64::from(*digit - b'0');
            } else {
                scale += 1;
            }
        }
        let power = (exponent + scale).clamp(-400, 400) as i32;
        let mut value = mantissa as f64;
        // Zero stays zero however large its exponent (0 × 10^400 would be 0 × ∞).
        if power != 0 && mantissa != 0 {
            value *= 10f64.powi(power);
        }
        Ok(Json::Number(if negative { -value } else { value }))
    }

    fn string(&mut self) -> Result<String, String> {
        if !self.eat(b'"') {
            return Err(self.error("expected a string"));
        }
        let mut out = String::new();
        // Runs between escapes are copied whole: they start and end at ASCII bytes, so they
        // are whole UTF-8.
        let mut run = self.at;
        loop {
            match self.peek() {
                None => return Err(self.error("unclosed string")),
                Some(b'"') => {
                    out.push_str(self.run(run));
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    out.push_str(self.run(run));
                    self.at += 1;
                    let escaped = self.peek();
                    self.at += 1;
                    out.push(match escaped {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => self.unicode_escape()?,
                        _ => return Err(self.error("unknown escape")),
                    });
                    run = self.at;
                }
                Some(0..=0x1f) => return Err(self.error("control character in a string")),
                Some(_) => self.at += 1,
            }
        }
    }

    /// The character of `\uXXXX`, or of a surrogate pair `\uD83D\uDE00`; a lone surrogate is
    /// no character.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if !self.rest().starts_with("\\u") {
                return Err(self.error("lone surrogate"));
            }
            self.at += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error("lone surrogate"));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error("lone surrogate"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .text
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.error("short \\u escape"))?;
        let mut code = 0;
        for digit in digits.chars() {
            code = code * 16
                + digit
                    .to_digit(16)
                    .ok_or_else(|| self.error("bad \\u escape"))?;
        }
        self.at += 4;
        Ok(code)
    }
}

/// A type read from JSON. The error says what was wrong, and where.
pub trait FromJson: Sized {
    fn from_json(json: &Json) -> Result<Self, String>;

    /// JSON text read as one: the error says whether it was no JSON or not this.
    fn from_text(text: &str) -> Result<Self, String> {
        Self::from_json(&Json::parse(text)?)
    }
}

/// A type written as JSON.
pub trait ToJson {
    fn to_json(&self) -> Json;
}

/// An object's fields, read by name: a required field is an error when absent, an optional one
/// is none when absent or `null` (as serde reads them).
pub struct Fields<'a>(&'a Json);

impl<'a> Fields<'a> {
    /// The fields of `json`, which must be an object.
    pub fn of(json: &'a Json) -> Result<Self, String> {
        match json {
            Json::Object(_) => Ok(Self(json)),
            _ => Err("expected an object".into()),
        }
    }

    pub fn required<T: FromJson>(&self, name: &str) -> Result<T, String> {
        self.optional(name)?
            .ok_or_else(|| format!("missing field `{name}`"))
    }

    pub fn optional<T: FromJson>(&self, name: &str) -> Result<Option<T>, String> {
        match self.0.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(value) => T::from_json(value)
                .map(Some)
                .map_err(|err| format!("`{name}`: {err}")),
        }
    }

    /// An optional field, or its type's default.
    pub fn or_default<T: FromJson + Default>(&self, name: &str) -> Result<T, String> {
        Ok(self.optional(name)?.unwrap_or_default())
    }
}

/// An object written field by field, in order.
#[derive(Default)]
pub struct Object(Vec<(String, Json)>);

impl Object {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn field(mut self, name: &str, value: Json) -> Self {
        self.0.push((name.to_owned(), value));
        self
    }

    /// A field written only when there is a value (serde's `skip_serializing_if`).
    pub fn some(self, name: &str, value: Option<Json>) -> Self {
        match value {
            Some(value) => self.field(name, value),
            None => self,
        }
    }

    pub fn done(self) -> Json {
        Json::Object(self.0)
    }
}

impl FromJson for String {
    fn from_json(json: &Json) -> Result<Self, String> {
        json.as_str()
            .map(str::to_owned)
            .ok_or_else(|| "expected a string".into())
    }
}

impl FromJson for bool {
    fn from_json(json: &Json) -> Result<Self, String> {
        match json {
            Json::Bool(value) => Ok(*value),
            _ => Err("expected true or false".into()),
        }
    }
}

impl FromJson for u64 {
    fn from_json(json: &Json) -> Result<Self, String> {
        json.as_u64()
            .ok_or_else(|| "expected a whole number from 0 to 2^53 - 1".into())
    }
}

/// Narrower whole numbers: out of their range is an error, not a wrap.
macro_rules! from_json_narrow {
    ($($int:ty),*) => {$(
        impl FromJson for $int {
            fn from_json(json: &Json) -> Result<Self, String> {
                let wide = u64::from_json(json)?;
                <$int>::try_from(wide).map_err(|_| format!("{wide} is out of range"))
            }
        }
    )*};
}
from_json_narrow!(u32, u16, usize);

// Loops rather than `collect`: each collected `Result` (and each map built from a sorted run)
// is code of its own per type in the wasm.
impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(json: &Json) -> Result<Self, String> {
        let Json::Array(items) = json else {
            return Err("expected an array".into());
        };
        let mut read = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            read.push(T::from_json(item).map_err(|err| format!("[{index}]: {err}"))?);
        }
        Ok(read)
    }
}

impl FromJson for SortedMap<String, String> {
    fn from_json(json: &Json) -> Result<Self, String> {
        let Json::Object(fields) = json else {
            return Err("expected an object".into());
        };
        let mut map = SortedMap::new();
        for (name, value) in fields {
            let value = String::from_json(value).map_err(|err| format!("`{name}`: {err}"))?;
            // The last of a name given twice counts, as `get` reads it.
            map.insert(name.clone(), value);
        }
        Ok(map)
    }
}

impl ToJson for String {
    fn to_json(&self) -> Json {
        Json::String(self.clone())
    }
}

impl ToJson for bool {
    fn to_json(&self) -> Json {
        Json::Bool(*self)
    }
}

impl ToJson for u64 {
    fn to_json(&self) -> Json {
        Json::Number(*self as f64)
    }
}

impl ToJson for u32 {
    fn to_json(&self) -> Json {
        Json::Number(f64::from(*self))
    }
}

impl ToJson for usize {
    fn to_json(&self) -> Json {
        Json::Number(*self as f64)
    }
}

impl ToJson for f64 {
    fn to_json(&self) -> Json {
        Json::Number(*self)
    }
}

impl<T: ToJson> ToJson for Option<T> {
    /// `null` when there is none, as serde writes a field it does not skip.
    fn to_json(&self) -> Json {
        self.as_ref().map_or(Json::Null, ToJson::to_json)
    }
}

impl<T: ToJson> ToJson for [T] {
    fn to_json(&self) -> Json {
        Json::Array(self.iter().map(ToJson::to_json).collect())
    }
}

impl<T: ToJson> ToJson for Vec<T> {
    fn to_json(&self) -> Json {
        self.as_slice().to_json()
    }
}

impl ToJson for SortedMap<String, String> {
    fn to_json(&self) -> Json {
        Json::Object(
            self.iter()
                .map(|(name, value)| (name.clone(), value.to_json()))
                .collect(),
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// What serde writes, [`FromJson`] reads as the same value.
    pub fn reads_what_serde_writes<T>(value: &T)
    where
        T: FromJson + Serialize + PartialEq + std::fmt::Debug,
    {
        let text = serde_json::to_string(value).unwrap();
        let json = Json::parse(&text).unwrap();
        assert_eq!(&T::from_json(&json).unwrap(), value, "{text}");
    }

    /// What [`ToJson`] writes is what serde writes, and serde reads it back.
    pub fn writes_what_serde_writes<T>(value: &T)
    where
        T: ToJson + Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let ours = value.to_json().to_text();
        assert_eq!(
            as_numbers(serde_json::from_str(&ours).unwrap()),
            as_numbers(serde_json::to_value(value).unwrap()),
            "{ours}"
        );
        assert_eq!(&serde_json::from_str::<T>(&ours).unwrap(), value);
    }

    /// `value` with every number as a float: JSON has one kind of number, serde_json two.
    pub fn as_numbers(value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::Number(number) => number.as_f64().into(),
            Value::Array(items) => Value::Array(items.into_iter().map(as_numbers).collect()),
            Value::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .map(|(name, value)| (name, as_numbers(value)))
                    .collect(),
            ),
            other => other,
        }
    }

    #[test]
    fn reads_every_kind_of_value_as_serde_json_does() {
        let text = r#" { "a" : [1, -2, 3.5, 1000, -0.25E-2, 0], "b": {"c": null, "d": true, "e": false},
            "s": "q\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00é", "empty": {}, "none": [] } "#;
        let ours = Json::parse(text).unwrap();
        let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
        let reread = Json::parse(&theirs.to_string()).unwrap().to_text();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&reread).unwrap(),
            theirs
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&ours.to_text()).unwrap(),
            theirs
        );
        assert_eq!(ours.get("s").and_then(Json::as_str), theirs["s"].as_str());
    }

    #[test]
    fn whole_numbers_up_to_javascripts_safe_integers_are_exact() {
        for number in [
            0u64,
            1,
            9,
            10,
            4_294_967_296,
            1_700_000_000_123,
            9_007_199_254_740_991,
        ] {
            let json = Json::parse(&number.to_string()).unwrap();
            assert_eq!(json.as_u64(), Some(number));
            assert_eq!(json.to_text(), number.to_string());
        }
        for (text, read) in [
            ("1.0", Some(1)),
            ("2e3", Some(2000)),
            ("1.5", None),
            ("-1", None),
            ("9007199254740992", None),
        ] {
            assert_eq!(Json::parse(text).unwrap().as_u64(), read, "{text}");
        }
        assert_eq!(
            u32::from_json(&Json::Number(4_294_967_296.0)),
            Err("4294967296 is out of range".into())
        );
    }

    #[test]
    fn fractions_and_odd_numbers_are_written_as_javascript_reads_them() {
        for (number, text) in [
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (1_700_000_000_000.125, "1700000000000.125"),
            (1e-10, "0"),
            (0.9999999999, "1"),
            (-0.0, "0"),
            (f64::NAN, "null"),
            (f64::INFINITY, "null"),
        ] {
            assert_eq!(Json::Number(number).to_text(), text, "{number}");
        }
    }

    #[test]
    fn strings_are_escaped_so_serde_reads_them_back() {
        let text = "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} é 😀 \u{2028}";
        let written = Json::String(text.into()).to_text();
        assert_eq!(serde_json::from_str::<String>(&written).unwrap(), text);
        assert_eq!(Json::parse(&written).unwrap().as_str(), Some(text));
    }

    /// Every malformed text is an error, never a panic or a partial value.
    #[test]
    fn malformed_text_is_refused() {
        for text in [
            "",
            " ",
            "{",
            "}",
            "[",
            "[1,]",
            "[1 2]",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{a:1}",
            "{\"a\":1 \"b\":2}",
            "\"unclosed",
            "\"bad \\x escape\"",
            "\"\\u12\"",
            "\"\\uZZZZ\"",
            "\"\\ud800\"",
            "\"\\ud800\\u0041\"",
            "\"\\udc00\"",
            "\"tab\there\"",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "tru",
            "nul",
            "truex",
            "1 2",
            "NaN",
            "Infinity",
            "'a'",
            "\u{feff}1",
        ] {
            assert!(Json::parse(text).is_err(), "{text:?} was read");
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_err(),
                "serde reads {text:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert!(Json::parse(&deep).unwrap_err().contains("nested too deep"));
        let fine = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(Json::parse(&fine).is_ok());
    }

    #[test]
    fn huge_exponents_and_long_mantissas_do_not_overflow() {
        assert_eq!(
            Json::parse("1e999999999999").unwrap(),
            Json::Number(f64::INFINITY)
        );
        assert_eq!(Json::parse("1e-999999999999").unwrap(), Json::Number(0.0));
        let long = format!("1{}", "0".repeat(400));
        assert_eq!(Json::parse(&long).unwrap(), Json::Number(f64::INFINITY));
        for zero in ["0e400", "0.0e309", "-0e-999999", "0E+99999999999999999999"] {
            assert_eq!(Json::parse(zero).unwrap().as_u64(), Some(0), "{zero}");
        }
        let shifted = format!("1{}e-200000", "0".repeat(200_000));
        assert_eq!(Json::parse(&shifted).unwrap().as_u64(), Some(1));
        let json = Json::parse("123456789012345678901234567890").unwrap();
        assert!(
            matches!(json, Json::Number(n) if (n / 1.234_567_890_123_456_8e29 - 1.0).abs() < 1e-12)
        );
    }

    #[test]
    fn fields_say_what_is_missing_or_wrong() {
        let json = Json::parse(r#"{"size":"big","name":null,"parts":[1,"x"]}"#).unwrap();
        let fields = Fields::of(&json).unwrap();
        assert_eq!(
            fields.required::<u64>("size").unwrap_err(),
            "`size`: expected a whole number from 0 to 2^53 - 1"
        );
        assert_eq!(
            fields.required::<String>("name").unwrap_err(),
            "missing field `name`"
        );
        assert_eq!(fields.optional::<String>("name"), Ok(None));
        assert_eq!(fields.or_default::<String>("absent"), Ok(String::new()));
        assert_eq!(
            fields.required::<Vec<u32>>("parts").unwrap_err(),
            "`parts`: [1]: expected a whole number from 0 to 2^53 - 1"
        );
        assert!(Fields::of(&Json::Array(vec![])).is_err());
    }

    #[test]
    fn a_name_given_twice_counts_the_last_time() {
        let json = Json::parse(r#"{"a":"1","b":"0","a":"2"}"#).unwrap();
        assert_eq!(json.get("a").and_then(Json::as_str), Some("2"));
        let map = SortedMap::<String, String>::from_json(&json).unwrap();
        assert_eq!(map.get("a").map(String::as_str), Some("2"));
        assert_eq!(map.len(), 2);
    }
}
