//! Any bytes as a configuration file: a config or an error with a line inside the file,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = netmoded::config::Config::parse(text, std::path::Path::new("fuzz.toml")) {
        let lines = text.lines().count().max(1);
        assert!(e.line.is_none_or(|l| l >= 1 && l <= lines + 1), "{e}");
        assert!(!e.to_string().is_empty());
    }
});
