//! raft (under construction).
