//! Starts the loops (in progress)
