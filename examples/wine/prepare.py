"""Split the DVC-tracked wine data into train and test sets (stratified, seeded)."""

from sklearn.model_selection import train_test_split

from common import params, read_csv, write_csv

p = params()
header, features, target = read_csv("data/wine.csv")
x_train, x_test, y_train, y_test = train_test_split(
    features,
    target,
    test_size=p.get("test_size", 0.25),
    random_state=p.get("seed", 42),
    stratify=target,
)
write_csv("prepared/train.csv", header, x_train, y_train)
write_csv("prepared/test.csv", header, x_test, y_test)
print(f"prepared {len(y_train)} training rows and {len(y_test)} test rows")
