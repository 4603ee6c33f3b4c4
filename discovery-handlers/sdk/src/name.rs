//! Handler names: DNS-1123 labels, as Kubernetes uses for most names.

/// Checks that `name` is a DNS-1123 label: 1 to 63 characters of lowercase
/// letters, digits and `-`, starting and ending with a letter or digit.
/// The error says what is wrong, for a person to read.
pub fn validate_handler_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a handler name must not be empty".to_owned());
    }
    if name.len() > 63 {
        return Err(format!(
            "handler name {name:?} is longer than 63 characters"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-'))
    {
        return Err(format!(
            "handler name {name:?} contains {bad:?}: use lowercase letters, digits and '-'"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "handler name {name:?} must start and end with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_labels() {
        for name in ["debug-echo", "udev", "a", "opc-ua-2", &"x".repeat(63)] {
            assert_eq!(validate_handler_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn rejects_non_labels_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("Debug", "contains 'D'"),
            ("a_b", "contains '_'"),
            ("-a", "start and end"),
            ("a-", "start and end"),
            ("a.b", "contains '.'"),
        ];
        for (name, reason) in cases {
            let error = validate_handler_name(name).expect_err(name);
            assert!(error.contains(reason), "{name}: {error}");
        }
        let long = "x".repeat(64);
        assert!(validate_handler_name(&long).is_err());
    }
}
