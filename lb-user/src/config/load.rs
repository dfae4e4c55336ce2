//! Reading and parsing a configuration file into a validated [`Config`].

use std::{
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};

use super::{
    model::{Config, Origin},
    validate,
};

/// A configuration problem, located in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file that was read.
    pub file: PathBuf,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// 1-based column (in characters), when the problem has a place in the file.
    pub column: Option<usize>,
    /// Dotted key of the offending setting (`interface.xdp_mode`), when known.
    pub key: Option<String>,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    /// An error at byte range `span` of `source`: line, column and key are derived from it.
    pub(crate) fn at(
        file: &Path,
        source: &str,
        span: Option<Range<usize>>,
        message: String,
    ) -> Self {
        let (line, column, key) = match span {
            Some(span) => {
                let (line, column) = line_column(source, span.start);
                (Some(line), Some(column), key_at(source, span.start))
            }
            None => (None, None, None),
        };
        ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            key,
            message,
        }
    }
}

/// Reads, parses and validates the file at `path`.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let source = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        key: None,
        message: format!("cannot read the file: {e}"),
    })?;
    load_str(path, &source)
}

/// Parses and validates `source`, naming `path` in errors.
pub fn load_str(path: &Path, source: &str) -> Result<Config, ConfigError> {
    let mut config: Config = toml::from_str(source)
        .map_err(|e| ConfigError::at(path, source, e.span(), e.message().trim_end().to_string()))?;
    config.origin = Origin {
        path: path.to_path_buf(),
        source: source.to_string(),
    };
    config.resolved =
        validate::validate(&config).map_err(|(span, message)| config.error_at(span, message))?;
    Ok(config)
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..floor_char_boundary(source, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The dotted key being set on the line holding byte `offset`: the nearest table header above
/// it joined with the key left of `=` on that line (or the header alone, for a header line).
fn key_at(source: &str, offset: usize) -> Option<String> {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[offset..]
        .find('\n')
        .map_or(source.len(), |i| offset + i);
    let line = source[line_start..line_end].trim();
    let header = |l: &str| -> Option<String> {
        let l = l.trim();
        let inner = l
            .strip_prefix("[[")
            .and_then(|r| r.split("]]").next())
            .or_else(|| l.strip_prefix('[').and_then(|r| r.split(']').next()))?;
        Some(inner.trim().to_string())
    };
    if let Some(table) = header(line) {
        return Some(table);
    }
    let table = source[..line_start].lines().rev().find_map(header);
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())?;
    Some(match table {
        Some(table) if !key.is_empty() => format!("{table}.{key}"),
        _ => key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(source: &str) -> ConfigError {
        load_str(Path::new("lb.toml"), source).expect_err("config should be rejected")
    }

    #[test]
    fn accepts_a_complete_config() {
        let config = load_str(
            Path::new("lb.toml"),
            "[global]\nxdp_mode = \"generic\"\n\n[[interface]]\nname = \"eth0\"\n\n[[interface]]\nname = \"eth1\"\nxdp_mode = \"native\"\n",
        )
        .expect("valid config");
        assert_eq!(config.interfaces.len(), 2);
        assert_eq!(
            config.interfaces[1].xdp_mode,
            Some(super::super::XdpModeSetting::Native)
        );
    }

    #[test]
    fn unknown_key_names_line_column_and_key() {
        let e = err(
            "[global]\nxdp_mode = \"auto\"\n\n[[interface]]\nname = \"eth0\"\nxdp_mdoe = \"native\"\n",
        );
        assert_eq!((e.line, e.column), (Some(6), Some(1)));
        assert_eq!(e.key.as_deref(), Some("interface.xdp_mdoe"));
        assert!(e.message.contains("unknown field `xdp_mdoe`"), "{e}");
        assert!(
            e.to_string()
                .starts_with("lb.toml:6:1: key `interface.xdp_mdoe`: "),
            "{e}"
        );
    }

    #[test]
    fn unknown_section_is_an_error() {
        let e = err("[globl]\n");
        assert_eq!((e.line, e.column), (Some(1), Some(2)));
        assert_eq!(e.key.as_deref(), Some("globl"));
        assert!(e.message.contains("unknown field `globl`"), "{e}");
    }

    #[test]
    fn bad_enum_value_says_what_was_expected() {
        let e = err("[global]\nxdp_mode = \"fast\"\n");
        assert_eq!(e.line, Some(2));
        assert_eq!(e.key.as_deref(), Some("global.xdp_mode"));
        assert!(
            e.message.contains("auto") && e.message.contains("fast"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_is_located() {
        let e = err("[[interface]]\nname = 42\n");
        assert_eq!((e.line, e.column), (Some(2), Some(8)));
        assert_eq!(e.key.as_deref(), Some("interface.name"));
    }

    #[test]
    fn syntax_error_is_located() {
        let e = err("[global\n");
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn validation_error_points_at_the_value() {
        let e = err("[[interface]]\nname = \"eth0\"\n\n[[interface]]\n  name = \"eth0\"\n");
        assert_eq!((e.line, e.column), (Some(5), Some(10)));
        assert_eq!(e.key.as_deref(), Some("interface.name"));
        assert!(e.message.contains("more than once"), "{e}");
    }

    const SERVICE: &str =
        "[[l4]]\nname = \"web\"\nvip = \"10.0.0.100:80\"\nreals = [{ addr = \"10.0.2.11\" }]\n";

    #[test]
    fn check_rise_zero_is_rejected() {
        let e = err(&format!(
            "{SERVICE}check = {{ kind = \"tcp\", rise = 0 }}\n"
        ));
        assert_eq!(e.line, Some(5));
        assert!(e.message.contains("`rise` must be at least 1"), "{e}");
    }

    #[test]
    fn check_timeout_above_interval_is_rejected() {
        let e = err(&format!(
            "{SERVICE}check = {{ kind = \"http\", inter = \"1s\", timeout = \"2s\" }}\n"
        ));
        assert_eq!(e.line, Some(5));
        assert!(e.message.contains("larger than its interval"), "{e}");
    }

    #[test]
    fn unknown_check_kind_is_rejected() {
        let e = err(&format!("{SERVICE}check = {{ kind = \"icmp\" }}\n"));
        assert_eq!(e.line, Some(5));
        assert!(
            e.message.contains("unknown variant `icmp`") && e.message.contains("`tcp`"),
            "{e}"
        );
    }

    #[test]
    fn script_that_is_not_executable_is_rejected() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let text = format!(
            "{SERVICE}check = {{ kind = \"script\", script = \"{}\" }}\n",
            file.path().display()
        );
        let e = err(&text);
        assert_eq!(e.line, Some(5));
        assert!(e.message.contains("is not an executable file"), "{e}");
        assert!(
            load_str(
                Path::new("lb.toml"),
                &text.replace(&file.path().display().to_string(), "/bin/true")
            )
            .is_ok()
        );
    }

    #[test]
    fn bad_duration_names_the_unit() {
        let e = err(&format!(
            "{SERVICE}check = {{ kind = \"tcp\", inter = \"2d\" }}\n"
        ));
        assert!(e.message.contains("unknown unit `d`"), "{e}");
    }

    #[test]
    fn http_check_defaults_follow_haproxy() {
        let config = load_str(
            Path::new("lb.toml"),
            &format!("{SERVICE}check = {{ kind = \"http\" }}\n"),
        )
        .expect("valid");
        let check = config.resolved.l4[0].check.as_ref().expect("check");
        assert_eq!((check.timing.rise, check.timing.fall), (2, 3));
        assert_eq!(check.timing.inter, std::time::Duration::from_secs(2));
        assert_eq!(check.timeout, check.timing.inter);
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let e = err("# é\n[[interface]]\nname = \"é\"\nbad = 1\n");
        assert_eq!((e.line, e.column), (Some(4), Some(1)));
    }

    #[test]
    fn track_services_name_an_l4_service_or_a_checked_backend() {
        let base = "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\nvips = [\"10.0.0.100/24\"]\n";
        let backends = "\n[[listen]]\nname = \"app\"\nbind = [\"127.0.0.1:8080\"]\n\
             servers = [{ name = \"s1\", addr = \"127.0.0.1:9000\" }]\ncheck = { kind = \"tcp\" }\n\n\
             [[listen]]\nname = \"unchecked\"\nbind = [\"127.0.0.1:8081\"]\n\
             servers = [{ name = \"s1\", addr = \"127.0.0.1:9000\" }]\n";
        let with = |entry: &str| format!("{base}track_services = [{entry}]\n{backends}");
        let config = load_str(
            Path::new("lb.toml"),
            &with("{ backend = \"app\", weight = -50 }"),
        )
        .expect("a checked backend");
        // The board holds L4 services first: with none, backend 0 is entry 0.
        assert_eq!(config.resolved.vrrp[0].track_services, vec![(0, -50)]);
        for (entry, expected) in [
            (
                "{ backend = \"nope\" }",
                "no backend or listen is called `nope`",
            ),
            (
                "{ backend = \"unchecked\" }",
                "backend `unchecked` has no check",
            ),
            ("{ service = \"web\", backend = \"app\" }", "not both"),
            ("{ weight = -5 }", "needs `service"),
        ] {
            let e = err(&with(entry));
            assert!(e.message.contains(expected), "{entry}: {e}");
        }
    }
}
