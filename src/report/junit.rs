//! A JUnit XML report of a run (one `testcase` per case), for CI systems
//! that show test results: the merged verdict of a partitioned gate reads
//! like one test run. Pure: results in, text out.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::results::RunResults;

/// The run as JUnit XML: passed cases, failed cases (`failure`, with the
/// metrics that failed), cases that could not run (`error`, with the
/// reason) and ignored cases (`skipped`).
pub fn junit(results: &RunResults) -> String {
    let lines = results.failure_lines();
    let reasons: BTreeMap<&str, &str> = lines.iter().filter_map(|l| l.split_once(": ")).collect();
    let mut cases = String::new();
    let (mut failures, mut errors) = (0, 0);
    let names = results
        .cases
        .iter()
        .map(|c| (&c.name, c.passed))
        .chain(results.suites.iter().map(|s| (&s.name, s.passed)));
    for (name, passed) in names {
        if passed {
            let _ = writeln!(
                cases,
                "    <testcase classname=\"servegate\" name=\"{}\"/>",
                esc(name)
            );
        } else {
            failures += 1;
            let why = reasons.get(name.as_str()).copied().unwrap_or("failed");
            let _ = writeln!(
                cases,
                "    <testcase classname=\"servegate\" name=\"{}\">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                esc(name),
                esc(why),
                esc(why)
            );
        }
    }
    for e in &results.errors {
        errors += 1;
        let first = e.error.lines().next().unwrap_or_default();
        let _ = writeln!(
            cases,
            "    <testcase classname=\"servegate\" name=\"{}\">\n      <error message=\"{}\">{}</error>\n    </testcase>",
            esc(&e.name),
            esc(first),
            esc(&e.error)
        );
    }
    for i in &results.ignored {
        let _ = writeln!(
            cases,
            "    <testcase classname=\"servegate\" name=\"{}\">\n      <skipped message=\"{}\"/>\n    </testcase>",
            esc(&i.name),
            esc(&i.reason)
        );
    }
    let tests =
        results.cases.len() + results.suites.len() + results.errors.len() + results.ignored.len();
    let skipped = results.ignored.len();
    let counts = format!(
        "tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\""
    );
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"servegate\" {counts}>\n  <testsuite name=\"servegate\" {counts}>\n{cases}  </testsuite>\n</testsuites>\n"
    )
}

/// XML text and attribute escaping (the five predefined entities, and no
/// control characters, which XML 1.0 cannot hold).
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 => out.push('?'),
            c => out.push(c),
        }
    }
    out
}
