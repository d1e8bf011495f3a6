//! kiroku middleware (work in progress).
