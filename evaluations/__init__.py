"""Evaluation: base-model quality, the method's results against β and N, reward quality, and benchmarks of the
samplers and rewards. Importing it registers nothing: ``evaluations.rewards.load_reward`` knows the toy oracle
(``toy-taste``) as well as alignment's rewards."""
