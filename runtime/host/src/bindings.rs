//! Generated bindings of the slot world (`slots/sdk/wit/`), one module per API
//! version. Only this module touches generated code's internals; the rest of
//! the host uses the re-exported types.
#![allow(unsafe_code, missing_docs, clippy::all)]

pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        world: "slot",
        path: "../../slots/sdk/wit/v0.1.0",
        additional_derives: [PartialEq, Eq],
    });
}
