//! Running the lb agent in a lab host (filled in below).
