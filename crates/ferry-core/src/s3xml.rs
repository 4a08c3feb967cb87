//! Just enough reading of S3's XML answers for what Ferry needs from them: the code and message of
//! an error document, and flat fields. Stores disagree on root names and namespaces, so fields are
//! found wherever they sit rather than through a strict schema.

/// The text inside the first `<name>..</name>`, unescaped.
pub fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(unescape(&xml[start..end]))
}

/// Every `<name>..</name>` block's inner text, in order.
pub fn elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let inner = &rest[start + open.len()..];
        let Some(end) = inner.find(&close) else { break };
        found.push(&inner[..end]);
        rest = &inner[end + close.len()..];
    }
    found
}

/// `(code, message)` of an `<Error>` document.
pub fn error(xml: &str) -> Option<(String, String)> {
    let error = elements(xml, "Error").into_iter().next()?;
    Some((
        element(error, "Code").unwrap_or_else(|| "Unknown".to_owned()),
        element(error, "Message").unwrap_or_default(),
    ))
}

/// Undoes XML's five escapes (ETags come as `&quot;..&quot;`).
fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_are_read() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>EntityTooSmall</Code><Message>part 1 &lt; 5 MiB</Message><RequestId>x</RequestId></Error>"#;
        assert_eq!(
            error(body),
            Some(("EntityTooSmall".into(), "part 1 < 5 MiB".into()))
        );
        assert_eq!(error("<CompleteMultipartUploadResult/>"), None);
        assert_eq!(
            error("<Error></Error>"),
            Some(("Unknown".into(), String::new()))
        );
    }

    #[test]
    fn repeated_elements_are_found_in_order() {
        let xml = "<L><Part><N>1</N></Part><Part><N>2</N></Part><Part><N>3</N></L>";
        let parts: Vec<_> = elements(xml, "Part")
            .into_iter()
            .map(|p| element(p, "N").unwrap())
            .collect();
        assert_eq!(parts, ["1", "2"], "an unclosed block is not a block");
        assert_eq!(
            element("<ETag>&quot;ab&quot;</ETag>", "ETag").as_deref(),
            Some("\"ab\"")
        );
    }
}
