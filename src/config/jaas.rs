//! Kafka's JAAS login lines, as `sasl.jaas.config` holds them:
//! `org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="admin-secret";`
//! Only the parsing: the caller picks the options it needs. Values are secrets; no
//! error here ever quotes one.

use std::collections::BTreeMap;

/// One login module: its class name and its options.
#[derive(PartialEq, Eq)]
pub struct LoginModule {
    pub class: String,
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for LoginModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Option values hold passwords: only their names are shown.
        f.debug_struct("LoginModule")
            .field("class", &self.class)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Parses `<class> <flag> key=value ... ;` (values quoted with `"`, in which `\"` and
/// `\\` escape, or bare). Exactly one module, as Kafka requires of `sasl.jaas.config`.
pub fn parse(text: &str) -> Result<LoginModule, String> {
    let mut chars = text.trim().chars().peekable();
    let word = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut w = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || c == ';' || c == '=' {
                break;
            }
            w.push(c);
            chars.next();
        }
        w
    };
    let class = word(&mut chars);
    if class.is_empty() {
        return Err("no login module class".into());
    }
    let flag = word(&mut chars).to_ascii_lowercase();
    if !["required", "requisite", "sufficient", "optional"].contains(&flag.as_str()) {
        return Err(format!(
            "the login module's flag must be required, requisite, sufficient or optional, not '{flag}'"
        ));
    }
    let mut options = BTreeMap::new();
    loop {
        let name = word(&mut chars);
        if name.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            // Not named: after a value with a space in it, the "name" is part of a
            // secret.
            return Err(
                "an option has no value (options are key=value; quote a value with spaces)".into(),
            );
        }
        let value = if let Some(quote) = chars.next_if(|c| *c == '"' || *c == '\'') {
            let mut v = String::new();
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some('n') => v.push('\n'),
                        Some('t') => v.push('\t'),
                        Some('r') => v.push('\r'),
                        Some(c) => v.push(c),
                        None => return Err(format!("option {name}: unterminated value")),
                    },
                    Some(c) if c == quote => break,
                    Some(c) => v.push(c),
                    None => return Err(format!("option {name}: unterminated value")),
                }
            }
            v
        } else {
            word(&mut chars)
        };
        options.insert(name, value);
    }
    while chars.peek().is_some_and(|c| c.is_whitespace()) {
        chars.next();
    }
    if chars.next() != Some(';') {
        return Err("the login module must end with ';'".into());
    }
    if chars.any(|c| !c.is_whitespace()) {
        return Err("only one login module is allowed".into());
    }
    Ok(LoginModule { class, options })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafkas_scram_and_plain_lines() {
        let m = parse(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="a \"quoted\" secret";"#,
        )
        .unwrap();
        assert_eq!(
            m.class,
            "org.apache.kafka.common.security.scram.ScramLoginModule"
        );
        assert_eq!(m.options["username"], "broker");
        assert_eq!(m.options["password"], "a \"quoted\" secret");
        let m = parse(
            "org.apache.kafka.common.security.plain.PlainLoginModule required\n  username=admin\n  password=\"x=y\"\n  user_admin=\"x=y\";",
        )
        .unwrap();
        assert_eq!(m.options["username"], "admin");
        assert_eq!(m.options["password"], "x=y");
        assert!(!format!("{m:?}").contains("x=y"), "values never shown");
        // Single quotes and an upper-case flag, as Kafka's parser takes them.
        let m = parse("Module REQUIRED username='a b' password=\"x\\ty\";").unwrap();
        assert_eq!(m.options["username"], "a b");
        assert_eq!(m.options["password"], "x\ty");
    }

    #[test]
    fn malformed_lines_are_refused_without_quoting_values() {
        for bad in [
            "",
            "Module",
            "Module maybe username=\"a\";",
            "Module required username=\"secret-value",
            "Module required username=\"a\"",
            "Module required username=\"a\"; Other required;",
            "Module required username;",
            "Module required password=secret-value value;",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(!err.contains("secret-value"), "{err}");
        }
    }
}
