"""Train ids of the classes the generator draws, and its label markers.

Scenes are painted in Cityscapes train ids (0..18); the finished map is
converted to label ids with ``TRAIN_ID_LUT`` (see ``scene.py``).
"""
from ..cityscapes_labels import CLASSES

_ID = {name: train_id for train_id, name in enumerate(CLASSES)}
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE = (
    _ID[n] for n in ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole'))
LIGHT, SIGN, VEGETATION, TERRAIN, SKY = (
    _ID[n] for n in ('traffic light', 'traffic sign', 'vegetation', 'terrain',
                     'sky'))
PERSON, RIDER, CAR, TRUCK, BUS = (
    _ID[n] for n in ('person', 'rider', 'car', 'truck', 'bus'))
MOTORCYCLE, BICYCLE = _ID['motorcycle'], _ID['bicycle']

#: Marker for the ego-vehicle hood in the train-id canvas ...
EGO = 254
#: ... which becomes this Cityscapes label id (ego vehicle, ignored).
EGO_LABEL_ID = 1
#: Train id of "no part here" in an object's part index.
NONE = 255
