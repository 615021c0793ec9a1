"""Hardware placement: which device a model runs on, and the pools heavy steps share."""
