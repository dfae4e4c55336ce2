//! Network-namespace lab (filled in below).
