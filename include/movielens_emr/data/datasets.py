"""The MovieLens releases the pipeline knows: files, sizes, download addresses and published checksums."""
from dataclasses import dataclass
from pathlib import Path

GROUPLENS = "https://files.grouplens.org/datasets/movielens"
SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"


@dataclass(frozen=True)
class Dataset:
    """One MovieLens release as GroupLens publishes it: a zip holding <name>/<files>."""

    name: str
    ratings_files: tuple
    movies_file: str
    ratings: int  # ratings in the release, for time estimates
    movies: int
    zip_md5: str  # the checksum GroupLens publishes beside the zip (<name>.zip.md5)
    bundled: bool = False  # shipped in include/sample_data/<name>/, so it works offline

    @property
    def url(self):
        return f"{GROUPLENS}/{self.name}.zip"

    @property
    def files(self):
        return (*self.ratings_files, self.movies_file)


CATALOGUE = {
    dataset.name: dataset
    for dataset in (
        Dataset("ml-100k", ("u.data",), "u.item", 100_000, 1_682, "0e33842e24a9c977be4e0107933c0723"),
        Dataset("ml-1m", ("ratings.dat",), "movies.dat", 1_000_209, 3_706,
                "c4d9eecfca2ab87c1945afe126590906"),
        Dataset("ml-latest-small", ("ratings.csv",), "movies.csv", 100_836, 9_742,
                "31a303aabbc519bd33d025e44d6c2570"),
        Dataset("ml-25m", ("ratings.csv",), "movies.csv", 25_000_095, 62_423,
                "6b51fb2759a8657d3bfcbfc42b592ada"),
        Dataset("ml-latest-small-sample", ("ratings.csv",), "movies.csv", 22_303, 5_017, "", bundled=True),
    )
}


class UnknownDataset(ValueError):
    """A dataset name outside the catalogue."""


def get_dataset(name):
    """The catalogue entry of a release, or UnknownDataset listing the known names."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownDataset(f"unknown dataset {name!r}; known: {', '.join(CATALOGUE)}") from None
