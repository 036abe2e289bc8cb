"""Pure row transforms: mapping, coercion, validation, masking, and the rejection type."""
