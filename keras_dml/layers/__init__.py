"""Layers for embedders: global pooling (GeM, avg+max) and input normalisation."""
from keras_dml.layers.pooling import GeneralizedMeanPooling2D, GlobalAvgMaxPooling2D, get_pooling
from keras_dml.layers.preprocessing import ChannelNormalization

__all__ = ["GeneralizedMeanPooling2D", "GlobalAvgMaxPooling2D", "get_pooling", "ChannelNormalization"]
