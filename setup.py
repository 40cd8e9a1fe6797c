from __future__ import annotations

import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

REPO_ROOT = osp.dirname(osp.abspath(__file__))
MIM_DIR = osp.join(REPO_ROOT, 'posattack', '.mim')


def add_mim_extension() -> None:
    """Ship configs/ (and model-index.yml, which MMEngine reads first) inside the package as
    ``posattack/.mim/``, the way mmseg's setup.py does, so that MMEngine resolves
    ``posattack::_base_/...`` after ``pip install``: a copy for a wheel or an sdist, a link for
    ``setup.py develop``. configs/ itself stays at the root, where the clone's tools, tests
    and docs name it."""
    if 'develop' in sys.argv:
        mode = 'symlink'
    elif 'sdist' in sys.argv or 'bdist_wheel' in sys.argv:
        mode = 'copy'
    else:
        return
    os.makedirs(MIM_DIR, exist_ok=True)
    for name in ('configs', 'model-index.yml'):
        source, target = osp.join(REPO_ROOT, name), osp.join(MIM_DIR, name)
        if osp.islink(target) or osp.isfile(target):
            os.remove(target)
        elif osp.isdir(target):
            shutil.rmtree(target)  # posattack/.mim is generated (git-ignored): ours to replace
        if mode == 'symlink':
            os.symlink(osp.relpath(source, MIM_DIR), target)
        elif osp.isdir(source):
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='posattack',
        version='0.2.0',
        description='Where does a segmentation network keep its sense of position? '
        'Identify, remove and measure position-encoding channels in MMSegmentation models.',
        long_description=open('README.md', encoding='utf-8').read(),
        long_description_content_type='text/markdown',
        packages=find_packages(include=['posattack', 'posattack.*']),
        # the configs (posattack::...) and the authors' rankings shipped with them
        package_data={'posattack': ['.mim/model-index.yml', '.mim/configs/**/*.py',
                                    '.mim/configs/**/*.json', '.mim/configs/**/LICENSE']},
        entry_points={'console_scripts': ['posattack=posattack.cli.main:main']},
        python_requires='>=3.9',
        # Pins follow what mmsegmentation 1.2.2 accepts; torch and mmcv are installed first by
        # tools/misc/setup_env.sh (CPU wheel; mmcv built from source with its compiled ops).
        install_requires=[
            'torch>=2.0',
            'mmcv>=2.0.0rc4,<2.2.0',
            'mmengine>=0.10.0,<0.11',
            'mmsegmentation==1.2.2',
            'ftfy',
            'regex',
            'opencv-python',
            'numpy',
            'matplotlib',
            'scipy',
        ],
        # antialiased: AntialiasedResNetV1c's BlurPool, Zhang's own package, licensed CC BY-NC-SA
        # 4.0 (not MIT): an extra, imported only when that backbone is built. vis: the
        # TensorBoard and W&B backends of --vis-backend (MMEngine imports them on demand).
        extras_require={'tests': ['pytest'], 'lint': ['ruff==0.17.6', 'isort==9.0.2'],
                        'antialiased': ['antialiased-cnns==0.3'],
                        'vis': ['tensorboard', 'wandb']},
        license='MIT',
    )
