//! A slot config as a config file or an `ApplyConfig` push carries it:
//! parsing and validation must answer with an error, never panic, and a
//! config that validates must validate again from its own output.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use vss_config::SlotsConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = SlotsConfig::from_yaml(text) else {
        return;
    };
    // Pushed configs are confined to the module folder; the file's are not.
    let _ = config.validate_confined(Path::new("/nonexistent-vss-fuzz-root"));
    let _ = config.validate();
});
