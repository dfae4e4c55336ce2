//! Checks serde cannot express: each failure carries the byte span of the offending value.

use std::{collections::HashSet, ops::Range};

use super::model::Config;

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
const MAX_IFNAME_LEN: usize = 15;

/// Validates `config`; on failure returns the span of the bad value and what is wrong.
pub(super) fn validate(config: &Config) -> Result<(), (Range<usize>, String)> {
    let mut seen = HashSet::new();
    for interface in &config.interfaces {
        let name = interface.name.get_ref();
        let span = interface.name.span();
        if name.is_empty() || name.len() > MAX_IFNAME_LEN {
            return Err((
                span,
                format!(
                    "expected an interface name of 1 to {MAX_IFNAME_LEN} bytes, found `{name}`"
                ),
            ));
        }
        if name.contains(['/', ':'])
            || name.chars().any(char::is_whitespace)
            || name == "."
            || name == ".."
        {
            return Err((
                span,
                format!("`{name}` is not a valid interface name (no `/`, `:` or spaces)"),
            ));
        }
        if !seen.insert(name.as_str()) {
            return Err((span, format!("interface `{name}` is listed more than once")));
        }
    }
    Ok(())
}
