"""A data set's facts live only in its spec: the export step's default input size is the spec's native size
(hand-listed here from the data sets' own documentation), overridden by ``data.image_size``."""

from __future__ import annotations

import pytest
from torch import nn

from dnr_sweep.config import RunConfig
from dnr_sweep.export.pipeline import default_input_size

NATIVE = {"digits": 8, "cifar10": 32, "cifar100": 32, "tinyimagenet": 64, "synthetic": 32}


@pytest.mark.parametrize(("dataset", "side"), NATIVE.items())
def test_default_input_size_is_the_native_size_of_the_data_set(dataset, side):
    config = RunConfig.model_validate({"data": {"dataset": dataset}})
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    assert default_input_size(config, model) == (3, side, side)


def test_image_size_overrides_the_native_size():
    config = RunConfig.model_validate({"data": {"dataset": "digits", "image_size": 16}})
    assert default_input_size(config, nn.Sequential(nn.Conv2d(1, 4, 3))) == (1, 16, 16)
