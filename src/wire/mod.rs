//! wire (under construction).
