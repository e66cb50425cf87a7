"""Cards of the published checkpoints the reference studies use (PROTOCOLS.md §1.2, §3), plus DINO.

Names are the studies' own, lower-case with hyphens. URLs are the publishers' direct links as used by
linusericsson/ssl-transfer, MR-HosseinzadehTaher/BenchmarkTransferLearning, torchvision, facebookresearch/dino and
facebookresearch/CovidPrognosis. Where no direct link is known (Dropbox shares, Google Cloud console, Zenodo records
whose file names we could not check), `url` is None and `manual` says where the file is published; the user
downloads it and runs ``medtransfer models convert NAME --from FILE``.

sha256: torchvision's file names carry the first 8 hex digits of the file's sha256 (what torch.hub checks), pinned
here as a prefix. No other publisher lists digests; those files are recorded in the lock file on first use.
`filename` is set where the published file name is known; for the Zenodo and iNat files it is not, and the manual
copy is passed with ``--from`` under whatever name it has.
"""

from __future__ import annotations

from medtransfer.models.card import InputContract, ModelCard

# Anton et al. and Ericsson et al.: Resize(224, bicubic) + CenterCrop(224) + ImageNet normalisation.
_IMAGENET = InputContract(input_size=224, crop_pct=1.0, interpolation="bicubic")
# BenchmarkTransferLearning and DINO evaluate with Resize(256) + CenterCrop(224).
_IMAGENET_875 = InputContract(input_size=224, crop_pct=0.875, interpolation="bilinear")
# SimCLR's TF models take raw [0, 1] pixels (ssl-transfer and Anton et al. run them with --no-norm).
_RAW = InputContract(input_size=224, crop_pct=1.0, interpolation="bicubic", mean=(0.0,) * 3, std=(1.0,) * 3,
                     normalization="none")
# CovidPrognosis trained on histogram-equalised X-rays (HistogramNormalize: 256 bins -> 0..255), not ImageNet stats.
_HISTEQ = InputContract(input_size=224, crop_pct=1.0, interpolation="bicubic", normalization="histeq")

_IN1K = "ImageNet-1k (1.28 M images, labels unused)"
_NC = "CC-BY-NC-4.0"
_FAIR = "https://dl.fbaipublicfiles.com"
_PYCONTRAST = ("Download {file} from the PyContrast model zoo (github.com/HobbitLong/PyContrast, "
               "pycontrast/docs/MODEL_ZOO.md; Dropbox links, which ssl-transfer also used).")
_ZENODO_BTL = ("Download the {what} ResNet-50 from Zenodo record 5205234 (zenodo.org/record/5205234, linked from "
               "MR-HosseinzadehTaher/BenchmarkTransferLearning, Version1).")
_SIMCLR = ("Download the {what} TensorFlow checkpoint from google-research/simclr ({where}; Google Cloud console, "
           "login needed) and pass its prefix (needs tensorflow), or convert it with tonylins/simclr-converter and "
           "pass the .pth with --format torchvision.")
_MOCO_CXR = ("Download {file} (MoCo-CXR, lr 1e-4) from the links in github.com/stanfordmlgroup/MoCo-CXR. Anton et "
             "al.'s already-flattened copy ({anton}, Zenodo record 8048780) converts with --format torchvision.")


def _ssl(name: str, converter: str, method: str, paper: str, license_: str, *, url: str | None = None,
         filename: str | None = None, manual: str = "", arch: str = "resnet50", dim: int = 2048,
         contract: InputContract = _IMAGENET, data: str = _IN1K, note: str = "",
         sha256: str | None = None) -> ModelCard:
    filename = filename or (url.rsplit("/", 1)[-1] if url else None)
    return ModelCard(name, arch, dim, input=contract, url=url, sha256=sha256, converter=converter,
                     filename=filename, manual=manual, method=method, pretraining_data=data, paper=paper,
                     license=license_, description=f"{method} {arch} pretrained on {data.split(' (')[0]}.{note}")


PUBLISHED: tuple[ModelCard, ...] = (
    # ------------------------------------------------------------------ the 14 self-supervised ImageNet ResNet-50s
    _ssl("insdis", "pycontrast", "InsDis (instance discrimination)", "Wu et al., CVPR 2018",
         "unknown: see HobbitLong/PyContrast", filename="InsDis.pth", manual=_PYCONTRAST.format(file="InsDis.pth")),
    _ssl("moco-v1", "moco", "MoCo v1", "He et al., Momentum Contrast, CVPR 2020", _NC,
         url=f"{_FAIR}/moco/moco_checkpoints/moco_v1_200ep/moco_v1_200ep_pretrain.pth.tar"),
    _ssl("moco-v2", "moco", "MoCo v2 (800 epochs)", "Chen et al., arXiv:2003.04297, 2020", _NC,
         url=f"{_FAIR}/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar"),
    _ssl("pcl-v1", "moco", "PCL v1", "Li et al., Prototypical Contrastive Learning, ICLR 2021",
         "unknown: see salesforce/PCL",
         url="https://storage.googleapis.com/sfr-pcl-data-research/PCL_checkpoint/PCL_v1_epoch200.pth.tar"),
    _ssl("pcl-v2", "moco", "PCL v2", "Li et al., Prototypical Contrastive Learning, ICLR 2021",
         "unknown: see salesforce/PCL",
         url="https://storage.googleapis.com/sfr-pcl-data-research/PCL_checkpoint/PCL_v2_epoch200.pth.tar"),
    _ssl("pirl", "pycontrast", "PIRL (PyContrast re-implementation)", "Misra & van der Maaten, CVPR 2020",
         "unknown: see HobbitLong/PyContrast", filename="PIRL.pth", manual=_PYCONTRAST.format(file="PIRL.pth")),
    _ssl("simclr-v1", "simclr-tf", "SimCLR v1 (1x)", "Chen et al., A Simple Framework for Contrastive Learning, "
         "ICML 2020", "Apache-2.0", filename="ResNet50_1x", contract=_RAW,
         manual=_SIMCLR.format(what="ResNet-50 (1x)", where="simclr-gcs/checkpoints/ResNet50_1x.zip"),
         note=" Takes raw [0, 1] pixels, no mean/std normalisation."),
    _ssl("simclr-v2", "simclr-tf", "SimCLR v2 (r50_1x_sk0)", "Chen et al., Big Self-Supervised Models are Strong "
         "Semi-Supervised Learners, NeurIPS 2020", "Apache-2.0", filename="r50_1x_sk0", contract=_RAW,
         manual=_SIMCLR.format(what="r50_1x_sk0", where="gs://simclr-checkpoints/simclrv2/pretrained/r50_1x_sk0"),
         note=" Takes raw [0, 1] pixels, no mean/std normalisation."),
    _ssl("sela-v2", "swav", "SeLa v2", "Caron et al., SwAV, NeurIPS 2020 (after Asano et al., ICLR 2020)", _NC,
         url=f"{_FAIR}/deepcluster/selav2_400ep_pretrain.pth.tar"),
    _ssl("infomin", "pycontrast", "InfoMin (800 epochs)", "Tian et al., What Makes for Good Views, NeurIPS 2020",
         "unknown: see HobbitLong/PyContrast", filename="InfoMin_800.pth",
         manual=_PYCONTRAST.format(file="InfoMin_800.pth")),
    _ssl("byol", "byol-haiku", "BYOL", "Grill et al., Bootstrap Your Own Latent, NeurIPS 2020", "Apache-2.0",
         url="https://storage.googleapis.com/byol_checkpoints/pretrain_res50x1.pkl", arch="resnet50-tfsame",
         note=" Built with TF 'SAME' padding as trained (the reference studies used symmetric padding, which "
              "costs ~4.6 points of ImageNet linear accuracy). A Haiku pickle: fetch and convert need --trust."),
    _ssl("deepcluster-v2", "swav", "DeepCluster v2 (800 epochs)", "Caron et al., SwAV, NeurIPS 2020", _NC,
         url=f"{_FAIR}/deepcluster/deepclusterv2_800ep_pretrain.pth.tar"),
    _ssl("swav", "swav", "SwAV (800 epochs)", "Caron et al., Unsupervised Learning of Visual Features by "
         "Contrasting Cluster Assignments, NeurIPS 2020", _NC, url=f"{_FAIR}/deepcluster/swav_800ep_pretrain.pth.tar"),
    _ssl("barlowtwins", "torchvision", "Barlow Twins (1000 epochs)", "Zbontar et al., ICML 2021", "MIT",
         url=f"{_FAIR}/barlowtwins/ep1000_bs2048_lrw0.2_lrb0.0048_lambd0.0051/resnet50.pth"),
    # -------------------------------------------------------------- supervised ImageNet (torchvision V1 weights)
    _ssl("supervised-r18", "torchvision", "supervised", "He et al., Deep Residual Learning, CVPR 2016",
         "BSD-3-Clause (torchvision)", url="https://download.pytorch.org/models/resnet18-f37072fd.pth",
         sha256="f37072fd",
         arch="resnet18", dim=512, data="ImageNet-1k (labels)"),
    _ssl("supervised-r50", "torchvision", "supervised", "He et al., Deep Residual Learning, CVPR 2016",
         "BSD-3-Clause (torchvision)", url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
         sha256="0676ba61",
         data="ImageNet-1k (labels)"),
    _ssl("supervised-d121", "densenet-legacy", "supervised", "Huang et al., Densely Connected Convolutional "
         "Networks, CVPR 2017", "BSD-3-Clause (torchvision)", arch="densenet121", dim=1024,
         url="https://download.pytorch.org/models/densenet121-a639ec97.pth", sha256="a639ec97",
         data="ImageNet-1k (labels)"),
    # ------------------------------------------------------------------ iNat2021, in-domain and domain-adapted
    _ssl("inat2021", "supervised-ckpt", "supervised", "Van Horn et al., Benchmarking Representation Learning for "
         "Natural World Image Collections, CVPR 2021", "unknown: see visipedia/newt", contract=_IMAGENET_875,
         data="iNat2021 (2.7 M images, 10,000 species)",
         manual="Download the iNat2021 supervised ResNet-50 linked from github.com/visipedia/newt (benchmark)."),
    _ssl("inat2021-mini", "supervised-ckpt", "supervised", "Van Horn et al., CVPR 2021", "unknown: see visipedia/newt",
         contract=_IMAGENET_875, data="iNat2021-mini (500 k images, 10,000 species)",
         manual="Download the iNat2021-mini supervised ResNet-50 linked from github.com/visipedia/newt (benchmark)."),
    _ssl("supervised-chestx-ray14", "supervised-ckpt", "supervised (in-domain)", "Hosseinzadeh Taher et al., "
         "A Systematic Benchmarking Analysis of Transfer Learning for Medical Image Analysis, DART 2021",
         "unknown: see the Zenodo record", contract=_IMAGENET_875, data="ChestX-ray14 (14 labels)",
         manual=_ZENODO_BTL.format(what="ChestX-ray14 (in-domain)")),
    _ssl("supervised-chexpert", "supervised-ckpt", "supervised (in-domain)", "Hosseinzadeh Taher et al., DART 2021",
         "unknown: see the Zenodo record", contract=_IMAGENET_875, data="CheXpert (14 labels)",
         manual=_ZENODO_BTL.format(what="CheXpert (in-domain)")),
    _ssl("imagenet-chestx-ray14", "supervised-ckpt", "domain-adapted: ImageNet -> ChestX-ray14",
         "Hosseinzadeh Taher et al., DART 2021", "unknown: see the Zenodo record", contract=_IMAGENET_875,
         data="ImageNet-1k then ChestX-ray14",
         manual=_ZENODO_BTL.format(what="ImageNet -> ChestX-ray14 (domain-adapted)")),
    _ssl("imagenet-chexpert", "supervised-ckpt", "domain-adapted: ImageNet -> CheXpert",
         "Hosseinzadeh Taher et al., DART 2021", "unknown: see the Zenodo record", contract=_IMAGENET_875,
         data="ImageNet-1k then CheXpert", manual=_ZENODO_BTL.format(what="ImageNet -> CheXpert (domain-adapted)")),
    # -------------------------------------------------------------------------- chest X-ray MoCo (CovidPrognosis)
    *(_ssl(f"mimic-chexpert-lr{lr}", "mimic-chexpert", f"MoCo v2 (lr {lr})", "Sriram et al., COVID-19 Prognosis "
           "via Self-Supervised Representation Learning and Multi-Image Prediction, arXiv:2101.04909, 2021", _NC,
           url=f"{_FAIR}/CovidPrognosis/pretrained_models/mimic-chexpert_lr_{lr}_bs_128_fd_128_qs_65536.pt",
           arch="densenet121", dim=1024, contract=_HISTEQ, data="MIMIC-CXR + CheXpert (chest X-rays)",
           note=" Expects histogram-equalised input (0..255), as trained.")
      for lr in ("0.01", "0.1", "1.0")),
    _ssl("moco-cxr-r18", "moco", "MoCo-CXR (MoCo v2, lr 1e-4)", "Sowrirajan et al., MoCo-CXR, MIDL 2021",
         "unknown: see stanfordmlgroup/MoCo-CXR", arch="resnet18", dim=512, data="CheXpert (chest X-rays)",
         filename="r8w-00001.pth.tar",
         manual=_MOCO_CXR.format(file="r8w-00001.pth.tar", anton="mimic-cxr_r18_lr_1e-4.pth")),
    _ssl("moco-cxr-d121", "moco", "MoCo-CXR (MoCo v2, lr 1e-4)", "Sowrirajan et al., MoCo-CXR, MIDL 2021",
         "unknown: see stanfordmlgroup/MoCo-CXR", arch="densenet121", dim=1024, data="CheXpert (chest X-rays)",
         filename="d1w-00001.pth.tar",
         manual=_MOCO_CXR.format(file="d1w-00001.pth.tar", anton="mimic-cxr_d121_lr_1e-4.pth")),
    # ---------------------------------------------------------------------------------------- DINO (beyond the studies)
    _ssl("dino-resnet50", "dino", "DINO", "Caron et al., Emerging Properties in Self-Supervised Vision "
         "Transformers, ICCV 2021", "Apache-2.0", contract=_IMAGENET_875,
         url=f"{_FAIR}/dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth"),
    _ssl("dino-vit-s16", "dino", "DINO", "Caron et al., ICCV 2021", "Apache-2.0", arch="vit-s16", dim=384,
         contract=_IMAGENET_875, url=f"{_FAIR}/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth"),
    _ssl("dino-vit-b16", "dino", "DINO", "Caron et al., ICCV 2021", "Apache-2.0", arch="vit-b16", dim=768,
         contract=_IMAGENET_875, url=f"{_FAIR}/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
         note=" The strongest linear-probe model of MedMNIST+ (Doerrich et al., 2025)."),
)
