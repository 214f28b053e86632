//! summary.md names files relative to the project, never by an absolute path of the machine
//! the run was on: `/work/main/results/RUN/conf/ceiling.conf` (from meta.json, ringway's
//! warnings, `explain/`) becomes `results/RUN/conf/ceiling.conf`, on whichever machine the
//! folder was measured or is re-rendered. Shared by `report` and `ceiling_report`.

use std::path::Path;

/// The run folder as summary.md names it: `results/RUN` when it sits in a `results/`
/// folder, else its own name.
pub fn run_name(run_dir: &Path) -> String {
    let abs = std::fs::canonicalize(run_dir).unwrap_or_else(|_| run_dir.to_path_buf());
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| run_dir.display().to_string());
    let in_results = abs
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == "results");
    if in_results {
        format!("results/{name}")
    } else {
        name
    }
}

/// `text` with every absolute path that leads into the run folder rewritten relative to
/// the project (`results/RUN/...`), whatever machine's prefix it carries, and the
/// project's own absolute prefix (of this checkout) removed.
pub fn relative(text: &str, run_dir: &Path) -> String {
    let rel = run_name(run_dir);
    let needle = format!("/{rel}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(&needle) {
        let (before, after) = (&rest[..i], &rest[i + needle.len()..]);
        // The path holding the match starts after whitespace, a quote, a backtick, `(` or `=`.
        let start = before
            .rfind(|c: char| c.is_whitespace() || "`'\"(=".contains(c))
            .map_or(0, |j| j + 1);
        let whole_name = !after.starts_with(|c: char| c.is_alphanumeric() || c == '-' || c == '_');
        if whole_name && (start == i || before[start..].starts_with('/')) {
            out.push_str(&before[..start]);
            out.push_str(&rel);
        } else {
            out.push_str(before);
            out.push_str(&needle);
        }
        rest = after;
    }
    out.push_str(rest);
    if let Some(root) = std::fs::canonicalize(run_dir)
        .ok()
        .and_then(|a| a.parent()?.parent().map(Path::to_path_buf))
        .filter(|_| rel.starts_with("results/"))
    {
        out = out.replace(&format!("{}/", root.display()), "");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_into_the_run_become_project_relative() {
        let base = std::env::temp_dir().join(format!("ringway-paths-{}", std::process::id()));
        let run = base.join("proj/results/20261126T010142Z-c357e1d");
        std::fs::create_dir_all(&run).unwrap();
        let other = "/work/main/results/20261126T010142Z-c357e1d";
        let here = std::fs::canonicalize(&run).unwrap();
        let text = format!(
            "nginx: private mount namespace: {other}/nginx/temp bound over /var/lib/nginx.\n\
             ringway: warning: {other}/conf/ceiling.conf:10: ignoring 'access_log'\n\
             Regenerate with `target/release/report {}`.\n\
             binary `{}/scripts/x` and `/tmp/baseline/ringway`; {other}-ceiling-100000 is another run\n",
            here.display(),
            here.parent().unwrap().parent().unwrap().display()
        );
        let got = relative(&text, &run);
        let r = "results/20261126T010142Z-c357e1d";
        assert!(
            got.contains(&format!("namespace: {r}/nginx/temp bound")),
            "{got}"
        );
        assert!(
            got.contains(&format!("warning: {r}/conf/ceiling.conf:10")),
            "{got}"
        );
        assert!(
            got.contains(&format!("`target/release/report {r}`.")),
            "{got}"
        );
        assert!(got.contains("binary `scripts/x`"), "{got}");
        // Paths outside the project and other runs' names are left as they are.
        assert!(got.contains("`/tmp/baseline/ringway`"), "{got}");
        assert!(got.contains(&format!("{other}-ceiling-100000")), "{got}");
        assert!(
            !got.contains("/work/main/results/20261126T010142Z-c357e1d/"),
            "{got}"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_folder_outside_results_is_named_by_itself() {
        let base = std::env::temp_dir().join(format!("ringway-paths2-{}", std::process::id()));
        let run = base.join("ringway-smoke.abc");
        std::fs::create_dir_all(&run).unwrap();
        assert_eq!(run_name(&run), "ringway-smoke.abc");
        let text = format!(
            "see {}/logs",
            std::fs::canonicalize(&run).unwrap().display()
        );
        assert_eq!(relative(&text, &run), "see ringway-smoke.abc/logs");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
