// Filled by the report code.
