//! XML in and out: parsing with roxmltree under fixed limits, and the one
//! escape function the message builders need.
//!
//! Everything a camera or a stranger on the network sends goes through
//! [`parse`] first: no DTDs (so no entity expansion), a cap on the number of
//! nodes and on the input's size. Lookups go by local name, and namespaces
//! are checked only where they tell messages apart, because cameras in the
//! field bind the same elements to whatever prefixes and (near-)namespaces
//! they please.

use roxmltree::{Document, Node, ParsingOptions};

/// The most nodes a parsed message may have.
const NODES_LIMIT: u32 = 20_000;

/// The most characters of a text value that are kept.
pub(crate) const TEXT_LIMIT: usize = 4096;

/// Parses `text` as XML under the limits; the error says what is wrong.
pub(crate) fn parse(text: &str, max_len: usize) -> Result<Document<'_>, String> {
    if text.len() > max_len {
        return Err(format!(
            "message of {} bytes is over the limit of {max_len}",
            text.len()
        ));
    }
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: NODES_LIMIT,
        ..ParsingOptions::default()
    };
    Document::parse_with_options(text, options).map_err(|error| format!("not XML: {error}"))
}

/// The first child element of `node` with this local name.
pub(crate) fn child<'a, 'i>(node: Node<'a, 'i>, local: &str) -> Option<Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == local)
}

/// The child elements of `node` with this local name.
pub(crate) fn children<'a, 'i>(
    node: Node<'a, 'i>,
    local: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    node.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == local)
}

/// Follows a path of local names down from `node`.
pub(crate) fn path<'a, 'i>(node: Node<'a, 'i>, names: &[&str]) -> Option<Node<'a, 'i>> {
    names.iter().try_fold(node, |node, name| child(node, name))
}

/// The trimmed text of an element (its direct text children), at most
/// [`TEXT_LIMIT`] characters; `None` when empty.
pub(crate) fn text(node: Node<'_, '_>) -> Option<String> {
    let mut out = String::new();
    for piece in node.children().filter(Node::is_text) {
        out.push_str(piece.text().unwrap_or_default());
    }
    let trimmed = out.trim();
    if trimmed.is_empty() {
        return None;
    }
    Some(trimmed.chars().take(TEXT_LIMIT).collect())
}

/// The text of the child with this local name.
pub(crate) fn child_text(node: Node<'_, '_>, local: &str) -> Option<String> {
    child(node, local).and_then(text)
}

/// The SOAP Body of an envelope (any SOAP version's namespace).
pub(crate) fn body<'a, 'i>(document: &'a Document<'i>) -> Result<Node<'a, 'i>, String> {
    let root = document.root_element();
    if root.tag_name().name() != "Envelope" {
        return Err(format!(
            "expected a SOAP Envelope, got <{}>",
            root.tag_name().name()
        ));
    }
    child(root, "Body").ok_or_else(|| "the SOAP envelope has no Body".to_owned())
}

/// The SOAP Header of an envelope, if any.
pub(crate) fn header<'a, 'i>(document: &'a Document<'i>) -> Option<Node<'a, 'i>> {
    child(document.root_element(), "Header")
}

/// Escapes text for use in XML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_dtds() {
        assert!(parse("<a/>", 3).unwrap_err().contains("over the limit"));
        let bomb = r#"<!DOCTYPE a [<!ENTITY x "xx">]><a>&x;</a>"#;
        assert!(parse(bomb, 1000).is_err(), "DTDs are refused");
        let deep = "<a>".repeat(30_000) + &"</a>".repeat(30_000);
        assert!(parse(&deep, 1 << 20).is_err(), "node limit holds");
    }

    #[test]
    fn lookups_by_local_name() {
        let doc = parse(
            r#"<s:Envelope xmlns:s="x"><s:Body><a:B xmlns:a="y"> hi <a:C>c</a:C></a:B></s:Body></s:Envelope>"#,
            1000,
        )
        .unwrap();
        let body = body(&doc).unwrap();
        assert_eq!(child_text(body, "B").as_deref(), Some("hi"));
        assert_eq!(path(body, &["B", "C"]).and_then(text).as_deref(), Some("c"));
        assert!(header(&doc).is_none());
        assert_eq!(escape("a<&>\"'"), "a&lt;&amp;&gt;&quot;&apos;");
    }
}
