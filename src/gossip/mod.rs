//! gossip (under construction).
