//! Client connection glue (loadgen, tests). (being written)
