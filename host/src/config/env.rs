//! `${NAME}` and `${NAME:-default}` substitution from the environment, done on
//! the raw text before parsing so it works in any value. `$$` is a literal `$`.
//! Comment lines are left alone. Line numbers are preserved.

/// Substitutes variables using `lookup`; errors name the line and variable.
pub fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<(usize, String)>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') || !line.contains('$') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let Some(end) = body.find('}') else {
                    errors.push((i + 1, "unterminated ${...}".to_string()));
                    out.push_str(&rest[pos..]);
                    rest = "";
                    break;
                };
                let expr = &body[..end];
                let (name, default) = match expr.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (expr, None),
                };
                let valid = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                if !valid {
                    errors.push((i + 1, format!("bad variable name in ${{{expr}}}")));
                } else {
                    match (lookup(name), default) {
                        (Some(v), _) => out.push_str(&v),
                        (None, Some(d)) => out.push_str(d),
                        (None, None) => errors.push((
                            i + 1,
                            format!("environment variable {name} is not set (use ${{{name}:-default}} for a default)"),
                        )),
                    }
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "HOME_DIR").then(|| "/home/a".to_string())
    }

    #[test]
    fn substitutes_with_defaults_and_escapes() {
        let out = substitute(
            "a = \"${HOME_DIR}/x\"\nb = \"${NOPE:-dflt}\"\nc = \"$$5 $x\"\n# ${MISSING}\n",
            env,
        )
        .unwrap();
        assert_eq!(
            out,
            "a = \"/home/a/x\"\nb = \"dflt\"\nc = \"$5 $x\"\n# ${MISSING}\n"
        );
    }

    #[test]
    fn reports_missing_variables_by_line() {
        let errs = substitute("a = 1\nb = \"${MISSING}\"\n", env).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, 2);
        assert!(errs[0].1.contains("MISSING is not set"));
    }
}
