"""Universal interatomic potentials behind one interface, relaxation of one structure, formation energies."""
