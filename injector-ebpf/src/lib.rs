#![no_std]
// Present so the crate resolves as a build-dependency of `injector`; the
// programs live in the `injector` binary target (src/main.rs).
