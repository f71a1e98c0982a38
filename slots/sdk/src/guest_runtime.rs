//! What a `no_std` guest needs from the environment on wasm32: an
//! allocator, a panic handler, and `cabi_realloc` (the canonical ABI's
//! allocation entry point, which wit-bindgen only provides on WASIp1).
#![allow(unsafe_code)]

use alloc::alloc::{Layout, alloc, realloc};

#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// A panic aborts the call with a trap; the host reports it and rebuilds
/// the instance.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// # Safety
/// Called only by the component model's canonical ABI with a pointer it got
/// from an earlier call (or null with `old_len == 0`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    if new_len == 0 {
        return align as *mut u8;
    }
    // SAFETY: the canonical ABI passes a power-of-two alignment and, for a
    // reallocation, the pointer and size of a live allocation it made here.
    let p = unsafe {
        if old_len == 0 {
            alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            realloc(
                old,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if p.is_null() {
        core::arch::wasm32::unreachable()
    }
    p
}

// `no_std` code on wasm32-wasip2 still calls `memcmp` & co. (string and
// slice comparisons), which the target expects from wasi-libc. Link the
// self-contained libc the toolchain ships; the linker pulls in only those
// routines, and they import nothing from WASI.
#[link(name = "c")]
unsafe extern "C" {}
