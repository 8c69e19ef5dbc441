//! Who am I (in progress)
