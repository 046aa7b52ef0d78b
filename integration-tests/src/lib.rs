//! Real clients against a real broker: see tests/.
