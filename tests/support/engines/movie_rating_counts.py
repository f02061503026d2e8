"""A one-stage MapReduce job for the engine seam's test: how many ratings each movie has.

It stands alone, as the jobs of jobs/ do, and runs on the EMR nodes' Python (3.9): each line of a
MovieLens ratings file (u.data's tabs, ratings.dat's '::', ratings.csv's commas with a header) gives
one rating of one movie; a line that does not is counted as skipped.
"""
import re

from mrjob.job import MRJob
from mrjob.protocol import TextValueProtocol
from mrjob.step import MRStep

SEPARATOR = re.compile(r"::|\t|,")


class MRMovieRatingCounts(MRJob):
    OUTPUT_PROTOCOL = TextValueProtocol

    def steps(self):
        return [MRStep(mapper=self.mapper_movie_of_rating, combiner=self.sum_counts,
                       reducer=self.reducer_count_line)]

    def mapper_movie_of_rating(self, _, line):
        fields = SEPARATOR.split(line.strip())
        if len(fields) < 3 or not fields[0].isdigit() or not fields[1].isdigit():
            self.increment_counter("input", "bad lines skipped")
            return
        self.increment_counter("input", "ratings read")
        yield int(fields[1]), 1

    def sum_counts(self, movie, counts):
        yield movie, sum(counts)

    def reducer_count_line(self, movie, counts):
        yield None, f"{movie},{sum(counts)}"


if __name__ == "__main__":
    MRMovieRatingCounts.run()
