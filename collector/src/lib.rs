//! kiroku collector (work in progress).
