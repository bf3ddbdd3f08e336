//! OpenWrt UCI configuration files (`/etc/config/<package>`): parsing and writing.
//!
//! Written by hand on purpose: the only complete implementation is libuci (C),
//! which we cannot link (no C dependencies, musl cross-builds), and no crate on
//! crates.io parses the file format without it. The format is small:
//!
//! ```text
//! package 'iot-inspector'            # optional, ignored
//! config <type> ['<name>']
//!     option <key> '<value>'
//!     list <key> '<value>'
//! ```
//!
//! Tokens follow libuci's tokenizer: a value may be unquoted, `'single quoted'`
//! (no escapes), `"double quoted"` (backslash escapes) or a concatenation of
//! those (`'it'\''s'` is `it's`, which is how `uci export` writes quotes);
//! `#` starts a comment outside quotes. A key repeated as `option` replaces the
//! value; `list` after `option` of the same key turns it into a list (libuci
//! does the same). The input is hostile (it is edited by hand and by web UIs):
//! every loop and allocation is bounded and errors name the line.

use std::fmt;

/// Largest file accepted; real configs are a few KiB.
pub const MAX_INPUT_BYTES: usize = 4 << 20;
/// Most sections in one file.
pub const MAX_SECTIONS: usize = 10_000;
/// Most options (distinct keys) in one section.
pub const MAX_OPTIONS: usize = 1_000;
/// Most values in one list.
pub const MAX_LIST_ITEMS: usize = 10_000;

/// The value of an option: `option k 'v'` or the items of `list k '...'` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Single(String),
    List(Vec<String>),
}

/// One `config <kind> ['<name>']` block and its options, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The section type (`device`, `rule`, ...).
    pub kind: String,
    /// The section name, `None` for anonymous sections.
    pub name: Option<String>,
    /// 1-based line of the `config` line (0 for sections built in code).
    pub line: usize,
    pub options: Vec<(String, Value)>,
}

impl Section {
    pub fn new(kind: impl Into<String>, name: Option<&str>) -> Self {
        Section {
            kind: kind.into(),
            name: name.map(str::to_owned),
            line: 0,
            options: Vec::new(),
        }
    }

    /// The value of `option key`; for a list, its last item (as `uci get` on a
    /// list would not, but a single value is what a caller asking this wants).
    pub fn get(&self, key: &str) -> Option<&str> {
        match self.value(key)? {
            Value::Single(v) => Some(v),
            Value::List(items) => items.last().map(String::as_str),
        }
    }

    /// The items of `list key`; an `option key` counts as a one-item list.
    pub fn list(&self, key: &str) -> Vec<&str> {
        match self.value(key) {
            None => Vec::new(),
            Some(Value::Single(v)) => vec![v.as_str()],
            Some(Value::List(items)) => items.iter().map(String::as_str).collect(),
        }
    }

    pub fn value(&self, key: &str) -> Option<&Value> {
        self.options.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `option key 'value'`, replacing any earlier value of `key`.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.put(key, Value::Single(value.into()));
    }

    /// Sets `list key` to `items`, replacing any earlier value of `key`.
    pub fn set_list<S: Into<String>>(&mut self, key: &str, items: impl IntoIterator<Item = S>) {
        self.put(
            key,
            Value::List(items.into_iter().map(Into::into).collect()),
        );
    }

    /// Removes `key`; true if it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.options.len();
        self.options.retain(|(k, _)| k != key);
        self.options.len() != before
    }

    fn put(&mut self, key: &str, value: Value) {
        match self.options.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.options.push((key.to_owned(), value)),
        }
    }
}

/// A syntax error, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UciError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for UciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for UciError {}

fn err(line: usize, message: impl Into<String>) -> UciError {
    UciError {
        line,
        message: message.into(),
    }
}

/// Parses the text of a UCI file into its sections, in file order.
pub fn parse(text: &str) -> Result<Vec<Section>, UciError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(err(0, format!("file larger than {MAX_INPUT_BYTES} bytes")));
    }
    let mut sections: Vec<Section> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let tokens = tokenize(raw, line)?;
        let Some((keyword, args)) = tokens.split_first() else {
            continue;
        };
        match keyword.as_str() {
            "package" => {
                if args.len() != 1 {
                    return Err(err(line, "'package' takes one name"));
                }
            }
            "config" => {
                let (kind, name) = match args {
                    [kind] => (kind, None),
                    [kind, name] => (kind, Some(name)),
                    _ => return Err(err(line, "'config' takes a type and an optional name")),
                };
                if !valid_type(kind) {
                    return Err(err(line, format!("invalid section type '{kind}'")));
                }
                if let Some(name) = name
                    && !valid_name(name)
                {
                    return Err(err(
                        line,
                        format!("invalid section name '{name}' (letters, digits and _ only)"),
                    ));
                }
                if sections.len() >= MAX_SECTIONS {
                    return Err(err(line, format!("more than {MAX_SECTIONS} sections")));
                }
                // A repeated name merges into the earlier section in libuci;
                // in a file we own that is always a mistake, so say so.
                if let Some(name) = name
                    && let Some(first) = sections
                        .iter()
                        .find(|s| s.name.as_deref() == Some(name.as_str()))
                {
                    return Err(err(
                        line,
                        format!("section '{name}' already defined on line {}", first.line),
                    ));
                }
                sections.push(Section {
                    kind: kind.clone(),
                    name: name.cloned(),
                    line,
                    options: Vec::new(),
                });
            }
            "option" | "list" => {
                let [key, value] = args else {
                    return Err(err(line, format!("'{keyword}' takes a name and one value")));
                };
                if !valid_name(key) {
                    return Err(err(
                        line,
                        format!("invalid option name '{key}' (letters, digits and _ only)"),
                    ));
                }
                let Some(section) = sections.last_mut() else {
                    return Err(err(line, format!("'{keyword}' before any 'config' line")));
                };
                add_value(section, keyword == "list", key, value, line)?;
            }
            other => return Err(err(line, format!("unknown keyword '{other}'"))),
        }
    }
    Ok(sections)
}

fn add_value(
    section: &mut Section,
    is_list: bool,
    key: &str,
    value: &str,
    line: usize,
) -> Result<(), UciError> {
    let existing = section.options.iter_mut().find(|(k, _)| k == key);
    match (existing, is_list) {
        (Some(slot), false) => slot.1 = Value::Single(value.to_owned()),
        (Some(slot), true) => {
            if let Value::Single(v) = &slot.1 {
                slot.1 = Value::List(vec![v.clone()]);
            }
            if let Value::List(items) = &mut slot.1 {
                if items.len() >= MAX_LIST_ITEMS {
                    return Err(err(
                        line,
                        format!("list '{key}' has more than {MAX_LIST_ITEMS} items"),
                    ));
                }
                items.push(value.to_owned());
            }
        }
        (None, is_list) => {
            if section.options.len() >= MAX_OPTIONS {
                return Err(err(
                    line,
                    format!("section has more than {MAX_OPTIONS} options"),
                ));
            }
            let v = if is_list {
                Value::List(vec![value.to_owned()])
            } else {
                Value::Single(value.to_owned())
            };
            section.options.push((key.to_owned(), v));
        }
    }
    Ok(())
}

/// Splits one line into tokens, libuci style. Each token is built from
/// adjacent unquoted, single-quoted and double-quoted parts.
fn tokenize(raw: &str, line: usize) -> Result<Vec<String>, UciError> {
    let mut tokens = Vec::new();
    let mut chars = raw.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => break,
            _ => {}
        }
        if tokens.len() >= 3 {
            return Err(err(
                line,
                "too many values on one line (quote values with spaces)",
            ));
        }
        let mut token = String::new();
        while let Some(&c) = chars.peek() {
            match c {
                c if c.is_ascii_whitespace() => break,
                '#' => break,
                '\'' => {
                    chars.next();
                    loop {
                        match chars.next() {
                            Some('\'') => break,
                            Some(c) => push_char(&mut token, c, line)?,
                            None => return Err(err(line, "unterminated ' quote")),
                        }
                    }
                }
                '"' => {
                    chars.next();
                    loop {
                        match chars.next() {
                            Some('"') => break,
                            Some('\\') => match chars.next() {
                                Some(c) => push_char(&mut token, c, line)?,
                                None => return Err(err(line, "unterminated \" quote")),
                            },
                            Some(c) => push_char(&mut token, c, line)?,
                            None => return Err(err(line, "unterminated \" quote")),
                        }
                    }
                }
                '\\' => {
                    chars.next();
                    match chars.next() {
                        Some(c) => push_char(&mut token, c, line)?,
                        None => {
                            return Err(err(
                                line,
                                "line ends in '\\' (continuations are not supported)",
                            ));
                        }
                    }
                }
                c => {
                    chars.next();
                    push_char(&mut token, c, line)?;
                }
            }
        }
        tokens.push(token);
    }
    Ok(tokens)
}

fn push_char(token: &mut String, c: char, line: usize) -> Result<(), UciError> {
    // Control characters (NUL, escape sequences, ...) never belong in a
    // config value and would be passed on to nft, logs and the web UI.
    if c.is_control() && c != '\t' {
        return Err(err(
            line,
            format!("control character U+{:04X} in a value", c as u32),
        ));
    }
    token.push(c);
    Ok(())
}

/// Section types: libuci allows letters, digits, `_` and `-` (our own file
/// uses `config iot-inspector 'main'`).
fn valid_type(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Section and option names: letters, digits and `_`, as libuci requires.
fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Writes sections in the layout `uci export` uses (tab-indented options,
/// values single-quoted, a `'` inside written as `'\''`), so `parse(write(s))`
/// gives `s` back (line numbers aside).
pub fn write(sections: &[Section]) -> String {
    let mut out = String::new();
    for (i, s) in sections.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str("config ");
        out.push_str(&quote(&s.kind));
        if let Some(name) = &s.name {
            out.push(' ');
            out.push_str(&quote(name));
        }
        out.push('\n');
        for (key, value) in &s.options {
            match value {
                Value::Single(v) => {
                    out.push_str(&format!("\toption {key} {}\n", quote(v)));
                }
                Value::List(items) => {
                    for v in items {
                        out.push_str(&format!("\tlist {key} {}\n", quote(v)));
                    }
                }
            }
        }
    }
    out
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
package 'iot-inspector'

# household and managed devices
config iot-inspector 'main'
	option enabled '1'

config device 'cam'                 # the hall camera
	option mac '02:00:5e:00:53:10'
	option label "Hall \"camera\""
	option household 0

config rule
	option device 'cam'
	list schedule 'mon-fri 21:00-07:00'
	list schedule sat-sun' '00:00-08:00
	option note 'it'\''s # not a comment'
"#;

    #[test]
    fn parses_sections_options_lists_and_quoting() {
        let s = parse(SAMPLE).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].kind, "iot-inspector");
        assert_eq!(s[0].name.as_deref(), Some("main"));
        assert_eq!(s[0].line, 5);
        assert_eq!(s[1].get("mac"), Some("02:00:5e:00:53:10"));
        assert_eq!(s[1].get("label"), Some("Hall \"camera\""));
        assert_eq!(s[1].get("household"), Some("0"));
        assert_eq!(s[2].name, None);
        assert_eq!(s[2].line, 13);
        assert_eq!(
            s[2].list("schedule"),
            vec!["mon-fri 21:00-07:00", "sat-sun 00:00-08:00"]
        );
        assert_eq!(s[2].get("note"), Some("it's # not a comment"));
        assert_eq!(s[2].get("missing"), None);
        assert!(s[2].list("missing").is_empty());
    }

    #[test]
    fn repeated_option_replaces_and_list_after_option_appends() {
        let s = parse("config a\n option x 1\n option x 2\n list x 3\n").unwrap();
        assert_eq!(
            s[0].value("x"),
            Some(&Value::List(vec!["2".into(), "3".into()]))
        );
        let s = parse("config a\n list x 1\n option x 2\n").unwrap();
        assert_eq!(s[0].value("x"), Some(&Value::Single("2".into())));
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("config a\n option x 'open\n", 2, "unterminated"),
            ("option x 1\n", 1, "before any 'config'"),
            ("config a\n\n bogus x 1\n", 3, "unknown keyword"),
            ("config a\n option x 1 2\n", 2, "too many values"),
            ("config a\n option 'bad key' 1\n", 2, "invalid option name"),
            ("config 'a b'\n", 1, "invalid section type"),
            ("config a 'n-1'\n", 1, "invalid section name"),
            ("config a n\nconfig b n\n", 2, "already defined on line 1"),
            ("config a\n option x \"a\\", 2, "unterminated"),
            ("config a\n option x a\\\n", 2, "continuations"),
            (
                "config a\n option x 'a\u{1b}[31m'\n",
                2,
                "control character",
            ),
            ("config\n", 1, "'config' takes"),
            ("config a\n list x\n", 2, "takes a name and one value"),
        ];
        for (text, line, needle) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
            assert!(e.to_string().starts_with(&format!("line {line}:")));
        }
    }

    #[test]
    fn hostile_input_is_bounded_and_never_panics() {
        // Too large.
        let big = "#".repeat(MAX_INPUT_BYTES + 1);
        assert!(parse(&big).is_err());
        // Too many list items.
        let mut t = String::from("config a\n");
        for i in 0..=MAX_LIST_ITEMS {
            t.push_str(&format!("list x {i}\n"));
        }
        assert!(parse(&t).unwrap_err().message.contains("more than"));
        // Arbitrary byte soup: only Ok or Err, never a panic.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let alphabet = b"config option list 'x\"\\#\n\t abc_-";
        for _ in 0..2_000 {
            let mut s = String::new();
            for _ in 0..(seed % 80) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push(alphabet[(seed % alphabet.len() as u64) as usize] as char);
            }
            let _ = parse(&s);
        }
    }

    #[test]
    fn write_then_parse_round_trips() {
        let mut dev = Section::new("device", Some("cam"));
        dev.set("mac", "02:00:5e:00:53:10");
        dev.set("label", "Anna's \"hall\" cam # 1");
        dev.set("empty", "");
        let mut rule = Section::new("rule", None);
        rule.set("device", "cam");
        rule.set_list("schedule", ["mon-fri 21:00-07:00", "sat 00:00-24:00"]);
        let main = Section::new("iot-inspector", Some("main"));
        let sections = vec![main, dev, rule];
        let text = write(&sections);
        let mut back = parse(&text).unwrap();
        for s in &mut back {
            s.line = 0;
        }
        assert_eq!(back, sections);
        // Parsing a file and writing it keeps the meaning.
        let parsed = parse(SAMPLE).unwrap();
        let mut again = parse(&write(&parsed)).unwrap();
        for (a, b) in again.iter_mut().zip(&parsed) {
            a.line = b.line;
        }
        assert_eq!(again, parsed);
    }

    #[test]
    fn section_editing_helpers() {
        let mut s = Section::new("rule", None);
        s.set("block", "1");
        s.set("block", "0");
        assert_eq!(s.get("block"), Some("0"));
        assert_eq!(s.options.len(), 1);
        assert!(s.remove("block"));
        assert!(!s.remove("block"));
        assert_eq!(s.get("block"), None);
    }
}
