//! Bad, odd and hostile inputs: every file gets an answer a user can act on, the input is never
//! changed, nothing is sent for a file that cannot be read, and the function carries on.

use serde_json::Value;

use crate::harness::{TestEnv, column, expected, gzip, invoke, parse_csv};

fn summary_key(key: &str) -> String {
    format!("{}.summary.json", key.replacen("incoming/", "enriched/", 1))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("the output is UTF-8")
}

/// The ETag and bytes of every object under `incoming/`, to prove the inputs are untouched.
async fn inputs(env: &TestEnv) -> Vec<(String, Option<String>, Vec<u8>)> {
    let mut all = Vec::new();
    for key in env.keys().await.into_iter().filter(|k| k.starts_with("incoming/")) {
        let head = env.s3.head_object().bucket(&env.bucket).key(&key).send().await.expect("head input");
        let bytes = env.get(&key).await.expect("input still there");
        all.push((key, head.e_tag().map(str::to_string), bytes));
    }
    all
}

#[tokio::test]
async fn every_unreadable_file_gets_a_failed_summary_that_says_what_to_fix_and_nothing_is_sent() {
    let env = TestEnv::new().await;
    let mut truncated = gzip(&"Company\nAcme\n".repeat(2_000).into_bytes());
    truncated.truncate(truncated.len() / 2);
    // Small as stored, past MAX_INPUT_BYTES (set to 40 MiB below) once decompressed.
    let bomb = gzip(format!("Company,Notes\n{}", format!("Acme,{}\n", "z".repeat(1_000)).repeat(42_000)).as_bytes());
    // One byte short of whole UTF-16: decoding it would invent a company named "\u{FFFD}".
    let mut odd_utf16: Vec<u8> = "\u{feff}Company\nAcme\n".encode_utf16().flat_map(u16::to_le_bytes).collect();
    odd_utf16.push(b'x');
    let mut long_row = b"Company,Notes\nAcme,".to_vec();
    long_row.extend(std::iter::repeat_n(b'x', 33 * 1024 * 1024));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("incoming/empty.csv", vec![], "the object is empty (0 bytes)"),
        ("incoming/empty.jsonl", vec![], "the object is empty (0 bytes)"),
        ("incoming/blank.csv", b"\r\n\r\n".to_vec(), "no header row"),
        ("incoming/quote.csv", b"Company,City\nAcme,Paris\n\"Beta,Berlin\nGamma,Rome\n".to_vec(), "line 3"),
        ("incoming/fake.csv.gz", b"Company\nAcme\n".to_vec(), "not gzip-compressed"),
        ("incoming/truncated.csv.gz", truncated, "upload the file again"),
        ("incoming/book.xlsx", b"PK\x03\x04rest".to_vec(), "supported formats are .csv"),
        ("incoming/table.parquet", b"PAR1rest".to_vec(), "supported formats are .csv"),
        ("incoming/report.pdf", b"%PDF-1.7".to_vec(), "supported formats are .csv"),
        ("incoming/renamed-workbook.csv", b"PK\x03\x04\x14\x00rest".to_vec(), "save it as CSV UTF-8"),
        ("incoming/renamed-pdf.jsonl", b"%PDF-1.7\n".to_vec(), "a PDF document"),
        ("incoming/no-company.csv", b"Email,Notes\nx@y.z,hi\n".to_vec(), "set FIELD_MAPPING"),
        ("incoming/twice.csv", b"Company,City,company\nAcme,Paris,Beta\n".to_vec(), "appears 2 times"),
        ("incoming/long-row.csv", long_row, "longer than 32 MiB"),
        ("incoming/array.jsonl", b"[{\"company\": \"Acme\"}, {\"company\": \"Beta\"}]".to_vec(), "not JSON Lines"),
        ("incoming/short-rows.csv", b"Id,Notes,Company\n1,a\n2,b\n".to_vec(), "no row reaches the company column"),
        ("incoming/odd-utf16.csv", odd_utf16, "UTF-16 text is damaged"),
        ("incoming/bomb.csv.gz", bomb, "once decompressed"),
    ];
    for (key, body, _) in &cases {
        env.put(key, body.clone()).await;
    }
    let before = inputs(&env).await;
    let app = env.app(&[("MAX_INPUT_BYTES", &(40 * 1024 * 1024).to_string())]);

    for (key, _, says) in &cases {
        let response = invoke(&app, env.enrich_event(key)).await;
        assert_eq!(response["results"][0]["outcome"], "failed", "{key}: {response}");
        let summary = env.summary(&summary_key(key)).await;
        assert_eq!(summary["status"], "failed", "{key}");
        let error = summary["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{key}: expected {says:?} in {error:?}");
        assert_eq!(env.get(&key.replacen("incoming/", "enriched/", 1)).await, None, "{key}: no output");
    }

    assert_eq!(env.emulator.stats().requests, 0, "nothing is sent for a file that cannot be read");
    assert_eq!(inputs(&env).await, before, "the inputs are neither changed nor deleted");
    // And the function answers normally afterwards.
    env.put("incoming/fine.csv", "Company\nContoso\n").await;
    let response = invoke(&app, env.enrich_event("incoming/fine.csv")).await;
    assert_eq!(response["results"][0]["status"], "complete", "{response}");
}

#[tokio::test]
async fn a_header_only_csv_is_complete_with_zero_rows_and_no_calls() {
    let env = TestEnv::new().await;
    env.put("incoming/h.csv", "Company,City\r\n").await;
    let app = env.app(&[]);

    invoke(&app, env.enrich_event("incoming/h.csv")).await;

    let summary = env.summary("enriched/h.csv.summary.json").await;
    assert_eq!(summary["status"], "complete", "{summary}");
    assert_eq!(summary["rows"]["total"], 0);
    let (header, rows) = parse_csv(&env.get("enriched/h.csv").await.unwrap());
    assert_eq!(&header[..3], ["Company", "City", "leadspace_status"]);
    assert!(rows.is_empty());
    assert_eq!(env.emulator.stats().requests, 0);
}

#[tokio::test]
async fn blank_and_duplicate_header_names_are_kept_and_do_not_stop_enrichment() {
    let env = TestEnv::new().await;
    env.put("incoming/h.csv", "Company,,Notes,Notes\nContoso,a,b,c\n").await;
    let app = env.app(&[]);

    invoke(&app, env.enrich_event("incoming/h.csv")).await;

    let (header, rows) = parse_csv(&env.get("enriched/h.csv").await.unwrap());
    assert_eq!(&header[..5], ["Company", "", "Notes", "Notes", "leadspace_status"]);
    assert_eq!(&rows[0][..5], ["Contoso", "a", "b", "c", expected("Contoso", None).0]);
}

#[tokio::test]
async fn ragged_rows_and_blank_names_each_get_a_status_and_keep_their_fields() {
    let env = TestEnv::new().await;
    let csv = "Company,City,Notes\n\
               Contoso,Paris\n\
               Acme, Inc.,Berlin,x\n\
               \"  \",Rome,blank name\n\
               ,Oslo,no name\n\
               Fabrikam,Lyon,note,,\n";
    env.put("incoming/r.csv", csv).await;
    let app = env.app(&[]);

    invoke(&app, env.enrich_event("incoming/r.csv")).await;

    let (header, rows) = parse_csv(&env.get("enriched/r.csv").await.unwrap());
    let (status, error) = (column(&header, "leadspace_status"), column(&header, "leadspace_error"));
    assert_eq!(rows.len(), 5, "every row once");
    assert_eq!(&rows[0][..3], ["Contoso", "Paris", ""], "a short row is padded");
    assert_eq!(rows[0][status], expected("Contoso", None).0);
    assert_eq!(rows[1][status], "invalid_input", "too many fields: the columns cannot be trusted");
    assert!(rows[1][error].contains("4 fields but the header has 3"), "{:?}", rows[1]);
    assert_eq!(rows[1].last().unwrap(), "x", "the extra field is kept, after ours");
    assert_eq!((rows[2][status].as_str(), rows[3][status].as_str()), ("invalid_input", "invalid_input"));
    assert!(rows[2][error].contains("company name is empty"), "{:?}", rows[2]);
    assert_eq!(rows[4][status], expected("Fabrikam", None).0, "trailing empty fields shift nothing");
    let summary = env.summary("enriched/r.csv.summary.json").await;
    assert_eq!(summary["rows"]["invalid_input"], 3, "{summary}");
    assert_eq!(env.emulator.stats().records_received, 2, "only the two usable companies are sent");
}

#[tokio::test]
async fn a_20_mb_cell_comes_back_whole_and_a_giant_company_name_is_not_sent() {
    let env = TestEnv::new().await;
    let cell = "y".repeat(20 * 1024 * 1024);
    let giant_name = "Z".repeat(600);
    env.put("incoming/big-cell.csv", format!("Company,Notes\nContoso,\"{cell}\"\n{giant_name},short\n")).await;
    let app = env.app(&[]);

    invoke(&app, env.enrich_event("incoming/big-cell.csv")).await;

    let (header, rows) = parse_csv(&env.get("enriched/big-cell.csv").await.unwrap());
    assert_eq!(rows[0][1], cell);
    assert_eq!(rows[0][column(&header, "leadspace_status")], expected("Contoso", None).0);
    assert_eq!(rows[1][column(&header, "leadspace_status")], "invalid_input");
    assert!(rows[1][column(&header, "leadspace_error")].contains("longer than 500 characters"));
    assert_eq!(env.emulator.stats().records_received, 1);
}

#[tokio::test]
async fn each_delimiter_is_detected_from_the_header_and_kept_in_the_output() {
    let env = TestEnv::new().await;
    let app = env.app(&[]);
    for (name, delimiter) in [("comma", ','), ("semicolon", ';'), ("tab", '\t'), ("pipe", '|')] {
        let d = delimiter;
        let key = format!("incoming/{name}.csv");
        env.put(&key, format!("Id{d}Company{d}City\n1{d}Contoso{d}Paris\n2{d}\"Acme{d} Inc.\"{d}Rome\n")).await;

        invoke(&app, env.enrich_event(&key)).await;

        let output = text(&env.get(&key.replace("incoming/", "enriched/")).await.unwrap());
        let mut reader = csv::ReaderBuilder::new().delimiter(d as u8).from_reader(output.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
        assert_eq!(&header[..4], ["Id", "Company", "City", "leadspace_status"], "{name}");
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(&rows[1][1], format!("Acme{d} Inc."), "{name}");
        assert_eq!(&rows[1][3], expected(&format!("Acme{d} Inc."), None).0, "{name}");
    }
}

#[tokio::test]
async fn legacy_code_pages_are_detected_and_their_names_reach_leadspace_as_written() {
    let env = TestEnv::new().await;
    let app = env.app(&[]);
    let cases: [(&str, &'static encoding_rs::Encoding, &[&str]); 4] = [
        (
            "windows-1250",
            encoding_rs::WINDOWS_1250,
            &["Zakłady Mięsne Łuków S.A.", "Škoda Auto a.s.", "Česká spořitelna, a.s.", "Żabka Polska Sp. z o.o."],
        ),
        (
            "windows-1251",
            encoding_rs::WINDOWS_1251,
            &["ОАО Газпром", "ПАО Сбербанк России", "Лукойл", "Норильский никель"],
        ),
        (
            "shift_jis",
            encoding_rs::SHIFT_JIS,
            &["トヨタ自動車株式会社", "株式会社日立製作所", "任天堂株式会社", "ソニーグループ株式会社"],
        ),
        (
            "gb18030",
            encoding_rs::GB18030,
            &["华为技术有限公司", "腾讯控股有限公司", "比亚迪股份有限公司", "阿里巴巴集团控股有限公司"],
        ),
    ];
    let mut sent = 0;
    for (label, encoding, names) in cases {
        let table: String = std::iter::once("Company;City\r\n".to_string())
            .chain(names.iter().map(|name| format!("{name};-\r\n")))
            .collect();
        let key = format!("incoming/{label}.csv");
        env.put(&key, encoding.encode(&table).0.into_owned()).await;

        invoke(&app, env.enrich_event(&key)).await;

        let summary = env.summary(&summary_key(&key)).await;
        assert_eq!(summary["source"]["encoding"], label, "{summary}");
        let output = env.get(&key.replace("incoming/", "enriched/")).await.unwrap();
        let output = text(output.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&output));
        let mut reader = csv::ReaderBuilder::new().delimiter(b';').from_reader(output.as_bytes());
        let written: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_string()).collect();
        assert_eq!(written, names, "{label}: the output holds the names as written, in UTF-8");
        let received: Vec<String> = env.emulator.received_records()[sent..]
            .iter()
            .map(|r| r["company"]["name"].as_str().unwrap().to_string())
            .collect();
        let mut wanted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut received_sorted = received.clone();
        wanted.sort();
        received_sorted.sort();
        assert_eq!(received_sorted, wanted, "{label}: Leadspace was asked about the real names");
        sent += received.len();
    }
}

#[tokio::test]
async fn every_common_encoding_comes_out_as_correct_utf8() {
    let env = TestEnv::new().await;
    let table = "Société;Ville\r\nSociété Générale;Paris\r\nMüller GmbH;Köln\r\n";
    let utf16 = |big_endian: bool| -> Vec<u8> {
        "\u{feff}"
            .encode_utf16()
            .chain(table.encode_utf16())
            .flat_map(|u| if big_endian { u.to_be_bytes() } else { u.to_le_bytes() })
            .collect()
    };
    let windows_1252 = encoding_rs::WINDOWS_1252.encode(table).0.into_owned();
    assert!(windows_1252.contains(&0xE9), "the fixture really is Windows-1252");
    let cases: Vec<(&str, Vec<u8>, &str, bool)> = vec![
        ("utf8", table.as_bytes().to_vec(), "utf-8", false),
        ("utf8-bom", [b"\xEF\xBB\xBF", table.as_bytes()].concat(), "utf-8", true),
        ("utf16le", utf16(false), "utf-16le", true),
        ("utf16be", utf16(true), "utf-16be", true),
        ("windows-1252", windows_1252, "windows-1252", true),
    ];
    let app = env.app(&[("FIELD_MAPPING", r#"{"company_name": "Société", "city": "Ville"}"#)]);
    for (name, bytes, encoding, bom) in cases {
        let key = format!("incoming/{name}.csv");
        env.put(&key, bytes).await;

        invoke(&app, env.enrich_event(&key)).await;

        let output = env.get(&key.replace("incoming/", "enriched/")).await.unwrap();
        assert_eq!(output.starts_with(b"\xEF\xBB\xBF"), bom, "{name}: a BOM only for files that came from Excel");
        let output = text(output.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&output));
        assert!(!output.contains('\u{FFFD}') && !output.contains("Ã"), "{name}: mojibake in {output}");
        let mut reader = csv::ReaderBuilder::new().delimiter(b';').from_reader(output.as_bytes());
        let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
        let rows: Vec<Vec<String>> =
            reader.records().map(|r| r.unwrap().iter().map(str::to_string).collect()).collect();
        assert_eq!(&header[..2], ["Société", "Ville"], "{name}");
        assert_eq!(&rows[0][..2], ["Société Générale", "Paris"], "{name}");
        assert_eq!(&rows[1][..2], ["Müller GmbH", "Köln"], "{name}");
        assert_eq!(rows[0][2], expected("Société Générale", None).0, "{name}: the right name was looked up");
        let summary = env.summary(&summary_key(&key)).await;
        assert_eq!(summary["source"]["encoding"], encoding, "{name}");
    }
    let names: Vec<String> =
        env.emulator.received_records().iter().map(|r| r["company"]["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names.len(), 2 * 5, "two companies from each of the five files: {names:?}");
    assert!(names.iter().all(|n| n == "Société Générale" || n == "Müller GmbH"), "{names:?}");
}

#[tokio::test]
async fn json_lines_that_are_broken_blank_or_not_objects_each_get_an_answer() {
    let env = TestEnv::new().await;
    let jsonl = "{\"account\": {\"name\": \"Contoso\", \"id\": 1}}\n\
                 \n\
                 not json at all\n\
                 [1, 2, 3]\n\
                 \"just a string\"\n\
                 {\"account\": {\"id\": 5}}\n\
                 {\"account\": {\"name\": \"  \"}}\n\
                 {\"account\": {\"name\": \"Fabrikam\"}}\n";
    env.put("incoming/j.jsonl", jsonl).await;
    let app = env.app(&[("FIELD_MAPPING", r#"{"company_name": "account.name"}"#)]);

    invoke(&app, env.enrich_event("incoming/j.jsonl")).await;

    let output = text(&env.get("enriched/j.jsonl").await.unwrap());
    let lines: Vec<Value> =
        output.lines().map(|l| serde_json::from_str(l).expect("every output line is JSON")).collect();
    assert_eq!(lines.len(), 7, "blank lines are not rows; every other line is");
    let statuses: Vec<&str> = lines.iter().map(|l| l["leadspace_status"].as_str().unwrap()).collect();
    assert_eq!(statuses[0], expected("Contoso", None).0);
    assert_eq!(&statuses[1..6], ["invalid_input"; 5]);
    assert_eq!(statuses[6], expected("Fabrikam", None).0);
    assert_eq!(lines[1]["leadspace_raw_line"], "not json at all");
    assert!(lines[1]["leadspace_error"].as_str().unwrap().contains("not valid JSON"));
    assert!(lines[2]["leadspace_error"].as_str().unwrap().contains("not an object"));
    assert!(output.lines().next().unwrap().starts_with("{\"account\": {\"name\": \"Contoso\", \"id\": 1},"));
    let summary = env.summary("enriched/j.jsonl.summary.json").await;
    assert_eq!((summary["rows"]["total"].as_u64(), summary["rows"]["invalid_input"].as_u64()), (Some(7), Some(5)));
}

#[tokio::test]
async fn a_field_mapping_naming_what_the_file_lacks_fails_listing_what_it_has() {
    let env = TestEnv::new().await;
    env.put("incoming/j.jsonl", "{\"account\": {\"name\": \"Contoso\"}, \"email\": \"a@b.c\"}\n").await;
    env.put("incoming/c.csv", "Company,City\nContoso,Paris\n").await;
    let app = env.app(&[("FIELD_MAPPING", r#"{"company_name": "acount.name"}"#)]);

    invoke(&app, env.enrich_event("incoming/j.jsonl")).await;
    invoke(&app, env.enrich_event("incoming/c.csv")).await;

    let error = env.summary("enriched/j.jsonl.summary.json").await["error"].as_str().unwrap().to_string();
    assert!(error.contains("\"acount.name\"") && error.contains("\"account.name\", \"email\""), "{error}");
    let error = env.summary("enriched/c.csv.summary.json").await["error"].as_str().unwrap().to_string();
    assert!(error.contains("\"acount.name\"") && error.contains("\"Company\", \"City\""), "{error}");
    assert_eq!(env.emulator.stats().requests, 0);
}

#[tokio::test]
async fn configured_limits_refuse_files_that_are_too_big_or_too_long() {
    let env = TestEnv::new().await;
    env.put("incoming/big.csv", format!("Company,Notes\nContoso,{}\n", "n".repeat(200_000))).await;
    env.put("incoming/long.csv", crate::harness::firms_csv(3_000)).await;
    let app = env.app(&[("MAX_INPUT_BYTES", "100000"), ("MAX_INPUT_ROWS", "2500")]);

    invoke(&app, env.enrich_event("incoming/big.csv")).await;
    invoke(&app, env.enrich_event("incoming/long.csv")).await;

    let error = env.summary("enriched/big.csv.summary.json").await["error"].as_str().unwrap().to_string();
    assert!(error.contains("MAX_INPUT_BYTES (100000)"), "{error}");
    let error = env.summary("enriched/long.csv.summary.json").await["error"].as_str().unwrap().to_string();
    assert!(error.contains("more than 2500 rows (MAX_INPUT_ROWS)"), "{error}");
    assert_eq!(env.emulator.stats().requests, 0);
}

#[tokio::test]
async fn a_1024_byte_key_is_enriched_and_every_key_written_fits_in_s3s_limit() {
    let env = TestEnv::new().await;
    let name = format!("{}.csv", "k".repeat(1024 - "incoming/".len() - ".csv".len()));
    let key = format!("incoming/{name}");
    assert_eq!(key.len(), 1024);
    env.put(&key, "Company\nContoso\n").await;
    let app = env.app(&[]);

    let response = invoke(&app, env.s3_event(&key)).await;

    let result = &response["results"][0];
    assert_eq!(result["status"], "complete", "{response}");
    let output_key = result["output_key"].as_str().unwrap();
    assert!(output_key.starts_with("enriched/kkk") && output_key.ends_with(".csv"), "{output_key}");
    let summary = env.summary(result["summary_key"].as_str().unwrap()).await;
    assert_eq!(summary["source"]["key"], key.as_str(), "the summary names the original key");
    assert!(env.get(output_key).await.is_some());
    assert!(env.keys().await.iter().all(|k| k.len() <= 1024));
}

#[tokio::test]
async fn a_key_with_every_reserved_character_is_decoded_and_mirrored() {
    let env = TestEnv::new().await;
    let name = "a b+c!$&'()*,;=:@[]{}^`~%23#?<>|\"\\ é €.csv";
    let key = format!("incoming/odd/{name}");
    env.put(&key, "Company\nContoso\n").await;
    // As S3 sends it: percent-encoded, spaces as '+'.
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b' ' => "+".to_string(),
            b'/' => "/".to_string(),
            b if b.is_ascii_alphanumeric() || b"-_.".contains(&b) => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect();
    let app = env.app(&[]);

    let response = invoke(&app, env.s3_event(&encoded)).await;

    assert_eq!(response["results"][0]["status"], "complete", "{response}");
    let output = env.get(&format!("enriched/odd/{name}")).await.expect("the output mirrors the decoded key");
    assert!(text(&output).starts_with("Company,leadspace_status"));
    assert_eq!(env.summary(&format!("enriched/odd/{name}.summary.json")).await["source"]["key"], key.as_str());
}

#[test]
fn a_field_mapping_that_is_not_json_fails_the_cold_start_naming_the_variable() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_leadspace-enrich"))
        .env_clear()
        .env("LEADSPACE_SECRET_ID", "leadspace")
        .env("FIELD_MAPPING", "{company_name: Account Name}")
        // Never reached: the configuration is checked before the runtime is contacted.
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .output()
        .expect("the function binary runs");

    assert!(!output.status.success());
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(said.contains("FIELD_MAPPING") && said.contains("is not valid JSON"), "{said}");
}
