//! The bottom layer: what every other layer may use and which uses nothing of lem but the
//! error type. Clocks (real and manual), time formatting, and the on-disk cache with atomic
//! writes.

pub mod cache;
pub mod clock;
pub mod seeded;
pub mod timefmt;
