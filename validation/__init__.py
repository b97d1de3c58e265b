"""The data-validation gate: Great Expectations suites generated from the data contracts.

`validate_batch(batch_dir, settings)` checks a staged batch (files, schema, values,
references, duplicates, time window, volume) and returns a `ValidationResult`. Importing
this package is cheap; Great Expectations itself is imported on the first validation.
"""

from validation.result import Failure, ValidationResult
from validation.runner import validate_batch

__all__ = ["Failure", "ValidationResult", "validate_batch"]
