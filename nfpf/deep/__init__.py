"""Deep models: the ResNet-18 downstream classifier and learned feature spaces.

- :class:`nfpf.deep.resnet.ResNetClassifier` (``classifier=resnet18``): the released NFPF
  training recipe as a scikit-learn-style estimator on images.
- :class:`nfpf.deep.simclr.SimCLRFeatures` (``features=simclr``): SimCLR trained on the pool.
- :class:`nfpf.deep.pretrained.PretrainedFeatures` (``features=pretrained``): a torchvision
  backbone's pooled features from local weights.

Everything trains through ``pytorch_lightning.Trainer`` with settings from config
(accelerator, devices, strategy, precision), so the same code runs on a CPU and on GPUs.
"""

from nfpf.deep.weights import WeightsNotFoundError

__all__ = ["PretrainedFeatures", "ResNetClassifier", "SimCLRFeatures", "WeightsNotFoundError"]


def __getattr__(name: str):
    if name == "ResNetClassifier":
        from nfpf.deep.resnet import ResNetClassifier

        return ResNetClassifier
    if name == "SimCLRFeatures":
        from nfpf.deep.simclr import SimCLRFeatures

        return SimCLRFeatures
    if name == "PretrainedFeatures":
        from nfpf.deep.pretrained import PretrainedFeatures

        return PretrainedFeatures
    raise AttributeError(f"module 'nfpf.deep' has no attribute {name!r}")
