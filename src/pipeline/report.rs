//! The page a person looks at: `<output key>.report.html`, beside the summary. One
//! self-contained file (inline CSS and SVG, no script, nothing fetched: its Content Security
//! Policy refuses any request), so it works offline and from a presigned S3 link. It shows the
//! run's status, rows by status, match rate, credits used and saved, what the matched companies
//! are (industries, employee ranges, countries, match confidence) and the first companies with
//! their answers. Written from what pass 2 already holds: no Leadspace call.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::summary::{RowCounts, RunStatus, Summary};
use crate::enrichment::{ATTRIBUTE_COUNT, COLUMNS, Enrichment, RowStatus};

/// Companies shown with their answers.
const SAMPLE_COMPANIES: usize = 10;
/// Bars a chart shows; the rest are summed as "other".
const CHART_BARS: usize = 8;

/// What pass 2 learns about the matched companies, for the report.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Profile {
    industries: BTreeMap<String, u64>,
    employee_ranges: BTreeMap<String, u64>,
    countries: BTreeMap<String, u64>,
    confidence: BTreeMap<String, u64>,
    samples: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    company: String,
    status: RowStatus,
    /// Leadspace's name, industry, employee range and country.
    answer: [String; 4],
}

/// The attribute of `column` among an answer's attributes (the columns after status and error).
fn attribute<'a>(attributes: &[&'a str; ATTRIBUTE_COUNT], column: &str) -> &'a str {
    COLUMNS.iter().position(|c| *c == column).and_then(|i| i.checked_sub(2)).map_or("", |i| attributes[i])
}

/// One more company with `value` ("unknown" when empty); a value's text is copied only the
/// first time it is seen (a file has hundreds of thousands of companies and a few dozen
/// industries).
fn count(counts: &mut BTreeMap<String, u64>, value: &str) {
    let value = if value.is_empty() { "unknown" } else { value };
    match counts.get_mut(value) {
        Some(count) => *count += 1,
        None => {
            counts.insert(value.to_owned(), 1);
        }
    }
}

impl Profile {
    /// Counts one company's answer, once per company; `company` names it, for the first few.
    pub fn add(&mut self, answer: &Enrichment, company: impl FnOnce() -> String) {
        let mut attributes = [""; ATTRIBUTE_COUNT];
        for (slot, value) in attributes.iter_mut().zip(answer.attributes()) {
            *slot = value;
        }
        let value = |column| attribute(&attributes, column);
        if matches!(answer.status, RowStatus::Enriched | RowStatus::LowConfidence) {
            count(&mut self.confidence, value("leadspace_confidence"));
            if answer.status == RowStatus::Enriched {
                count(&mut self.industries, value("leadspace_industry"));
                count(&mut self.employee_ranges, value("leadspace_employees_range"));
                count(&mut self.countries, value("leadspace_country"));
            }
        }
        if self.samples.len() < SAMPLE_COMPANIES {
            self.samples.push(Sample {
                company: company(),
                status: answer.status,
                answer: [
                    value("leadspace_name").to_owned(),
                    value("leadspace_industry").to_owned(),
                    value("leadspace_employees_range").to_owned(),
                    value("leadspace_country").to_owned(),
                ],
            });
        }
    }
}

/// HTML text, escaped for an element or a quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Rows by status, in the order the summary lists them, with each status's colour.
fn statuses(rows: &RowCounts) -> [(&'static str, u64, &'static str); 6] {
    [
        ("enriched", rows.enriched, "#2e7d32"),
        ("not_matched", rows.not_matched, "#9e9e9e"),
        ("low_confidence", rows.low_confidence, "#f9a825"),
        ("invalid_input", rows.invalid_input, "#6d4c41"),
        ("failed", rows.failed, "#c62828"),
        ("not_attempted", rows.not_attempted, "#1565c0"),
    ]
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 }
}

/// One horizontal bar chart as inline SVG: the largest values first, the rest as "other".
fn bar_chart(title: &str, counts: &BTreeMap<String, u64>) -> String {
    let mut entries: Vec<(&str, u64)> = counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    entries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let other: u64 = entries.iter().skip(CHART_BARS).map(|(_, v)| v).sum();
    entries.truncate(CHART_BARS);
    if other > 0 {
        entries.push(("other", other));
    }
    let mut html = format!("<figure class=\"chart\"><figcaption>{}</figcaption>", escape(title));
    if entries.is_empty() {
        html.push_str("<p class=\"empty\">no matched companies</p></figure>");
        return html;
    }
    let max = entries.iter().map(|(_, v)| *v).max().unwrap_or(1).max(1);
    let (row_height, label_width, bar_width) = (22, 170, 220);
    let height = row_height * entries.len();
    let _ = write!(
        html,
        "<svg class=\"bars\" role=\"img\" aria-label=\"{}\" width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\">",
        escape(title),
        label_width + bar_width + 60,
        label_width + bar_width + 60
    );
    for (i, (label, value)) in entries.iter().enumerate() {
        let y = i * row_height;
        let width = ((*value as f64 / max as f64) * bar_width as f64).max(1.0);
        let shown: String = label.chars().take(26).collect();
        let _ = write!(
            html,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect class=\"bar\" x=\"{label_width}\" y=\"{}\" \
             width=\"{width:.1}\" height=\"{}\"><title>{}: {value}</title></rect><text x=\"{:.1}\" y=\"{}\">{value}</text>",
            label_width - 6,
            y + 15,
            escape(&shown),
            y + 4,
            row_height - 8,
            escape(label),
            label_width as f64 + width + 4.0,
            y + 15,
        );
    }
    html.push_str("</svg></figure>");
    html
}

const STYLE: &str = "body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#212121}\
h1{font-size:20px;margin:0 0 4px}.meta{color:#616161;margin:0 0 16px}\
.status{display:inline-block;padding:2px 8px;border-radius:10px;color:#fff;font-weight:600}\
.complete{background:#2e7d32}.partial{background:#f9a825}.failed{background:#c62828}.running{background:#1565c0}\
.figures{display:flex;gap:24px;margin:16px 0}.figure b{display:block;font-size:22px}\
.rowbar{display:flex;height:22px;border-radius:4px;overflow:hidden;background:#eee;margin:8px 0}\
.rowbar span{display:block;height:100%}.legend span{margin-right:14px}.legend i{display:inline-block;width:10px;\
height:10px;margin-right:4px}.charts{display:flex;flex-wrap:wrap;gap:24px}.chart{margin:0}\
figcaption{font-weight:600;margin-bottom:4px}.bars text{font-size:12px;fill:#424242}.bars .bar{fill:#1565c0}\
table{border-collapse:collapse;margin-top:8px}td,th{border-bottom:1px solid #e0e0e0;padding:4px 10px;text-align:left}\
.error{color:#c62828}.empty{color:#9e9e9e}";

/// The report for `summary`; `profile` is what pass 2 counted (none for a file that failed
/// before it).
pub fn render(summary: &Summary, profile: &Profile) -> String {
    let rows = &summary.rows;
    let status = serde_json::to_value(summary.status).ok();
    let status = status.as_ref().and_then(|s| s.as_str()).unwrap_or("unknown");
    let answered = rows.enriched + rows.not_matched + rows.low_confidence;
    let saved = summary.cache.map_or(0, |c| c.credits_saved) + summary.reused.journal + summary.reused.previous_version;
    let mut html = String::with_capacity(16 * 1024);
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>Enrichment of {key}</title>\
         <style>{STYLE}</style></head><body><h1>{key}</h1><p class=\"meta\"><span class=\"status {status}\">{status}\
         </span> · {name} · started {started}, finished {finished} · output <code>{output}</code></p>",
        key = escape(&summary.source.key),
        name = escape(&summary.enrichment_name),
        started = escape(&summary.started_at),
        finished = escape(&summary.finished_at),
        output = escape(&summary.output.key),
    );
    if let Some(error) = &summary.error {
        let _ = write!(html, "<p class=\"error\">{}</p>", escape(error));
    }
    let _ = write!(
        html,
        "<div class=\"figures\"><div class=\"figure\"><b>{}</b>rows</div><div class=\"figure\"><b>{}</b>unique \
         companies</div><div class=\"figure\"><b>{:.0}%</b>match rate (rows matched of rows answered)</div>\
         <div class=\"figure\"><b>{}</b>credits used (records sent)</div><div class=\"figure\"><b>{saved}</b>credits \
         saved (cache and earlier runs)</div></div>",
        rows.total,
        summary.unique_companies,
        percent(rows.enriched + rows.low_confidence, answered),
        summary.leadspace.records_sent,
    );
    html.push_str("<h2>Rows by status</h2><div class=\"rowbar\" role=\"img\" aria-label=\"rows by status\">");
    for (name, count, colour) in statuses(rows).iter().filter(|(_, count, _)| *count > 0) {
        let _ = write!(
            html,
            "<span class=\"segment\" style=\"width:{:.2}%;background:{colour}\" title=\"{name}: {count}\"></span>",
            percent(*count, rows.total)
        );
    }
    html.push_str("</div><p class=\"legend\">");
    for (name, count, colour) in statuses(rows) {
        let _ = write!(html, "<span><i style=\"background:{colour}\"></i>{name} {count}</span>");
    }
    html.push_str("</p><h2>Matched companies</h2><div class=\"charts\">");
    html.push_str(&bar_chart("Industries", &profile.industries));
    html.push_str(&bar_chart("Employees", &profile.employee_ranges));
    html.push_str(&bar_chart("Countries", &profile.countries));
    html.push_str(&bar_chart("Match confidence", &profile.confidence));
    html.push_str("</div>");
    if !profile.samples.is_empty() {
        html.push_str(
            "<h2>First companies</h2><table><tr><th>company</th><th>status</th><th>Leadspace name</th><th>industry</th>\
             <th>employees</th><th>country</th></tr>",
        );
        for sample in &profile.samples {
            let _ = write!(html, "<tr><td>{}</td><td>{}</td>", escape(&sample.company), sample.status.as_str());
            for value in &sample.answer {
                let _ = write!(html, "<td>{}</td>", escape(value));
            }
            html.push_str("</tr>");
        }
        html.push_str("</table>");
    }
    if summary.status == RunStatus::Running {
        html.push_str("<p>The run is still going; this page is written again when it ends.</p>");
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn company_values_are_escaped_and_nothing_is_fetched() {
        let mut profile = Profile::default();
        let answer = Enrichment::without_attributes(RowStatus::NotMatched, None);
        profile.add(&answer, || "<script>alert(1)</script> & Co".into());
        let html = bar_chart("x", &BTreeMap::from([("<b>".to_string(), 2)]));
        assert!(html.contains("&lt;b&gt;") && !html.contains("<b>"), "{html}");
        assert_eq!(profile.samples[0].company, "<script>alert(1)</script> & Co");
        assert_eq!(escape(&profile.samples[0].company), "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co");
    }

    #[test]
    fn charts_show_the_largest_values_and_sum_the_rest() {
        let counts: BTreeMap<String, u64> = (0..12).map(|i| (format!("k{i:02}"), i + 1)).collect();
        let html = bar_chart("Industries", &counts);
        assert_eq!(html.matches("class=\"bar\"").count(), CHART_BARS + 1);
        assert!(html.contains(">k11<") && html.contains(">other<") && !html.contains(">k00<"), "{html}");
    }
}
