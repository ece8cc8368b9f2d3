"""Layers: global pooling (GeM, avg+max), input normalisation, and the PDDM unit."""
from keras_dml.layers.pddm import PDDM
from keras_dml.layers.pooling import GeneralizedMeanPooling2D, GlobalAvgMaxPooling2D, get_pooling
from keras_dml.layers.preprocessing import ChannelNormalization

__all__ = ["GeneralizedMeanPooling2D", "GlobalAvgMaxPooling2D", "get_pooling", "ChannelNormalization", "PDDM"]
