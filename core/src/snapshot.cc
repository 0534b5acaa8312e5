// Filled by the snapshot code.
