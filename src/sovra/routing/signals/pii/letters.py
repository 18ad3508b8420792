"""Character classes the address and name patterns share."""

__all__ = ["UPPER"]

# Capital letters: ASCII, Latin-1 and Latin Extended-A ("Šafránce", "Łódź", "Żory").
UPPER = "A-ZÀ-ÖØ-ÞĀĂĄĆĈĊČĎĐĒĔĖĘĚĜĞĠĢĤĦĨĪĬĮİĲĴĶĹĻĽĿŁŃŅŇŊŌŎŐŒŔŖŘŚŜŞŠŢŤŦŨŪŬŮŰŲŴŶŸŹŻŽ"
