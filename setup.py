from __future__ import annotations
from setuptools import find_packages, setup

setup(
    name='posattack',
    version='0.2.0',
    description='Where does a segmentation network keep its sense of position? '
    'Identify, remove and measure position-encoding channels in MMSegmentation models.',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['posattack', 'posattack.*']),
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
    # 4.0 (not MIT): an extra, imported only when that backbone is built
    extras_require={'tests': ['pytest'], 'lint': ['ruff==0.17.6', 'isort==9.0.2'],
                    'antialiased': ['antialiased-cnns==0.3']},
    license='MIT',
)
